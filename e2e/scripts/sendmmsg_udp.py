"""Two UDP datagrams to 127.0.0.1:PORT in one sendmmsg call.

sendmmsg has no tracepoint of ours (neither sendto nor sendmsg fires); the
kernel's cgroup sendmsg4 hook sees each datagram's destination. Prints how many
were sent.
"""
import ctypes, socket, struct, sys

port = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
name = ctypes.create_string_buffer(
    struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton("127.0.0.1") + bytes(8), 16)
payload = ctypes.create_string_buffer(b"mm", 2)
iov = ctypes.create_string_buffer(struct.pack("<QQ", ctypes.addressof(payload), 2), 16)
# struct mmsghdr: struct msghdr (name, namelen, iov, iovlen, control, controllen, flags) and msg_len.
one = struct.pack("<QI4xQQQQi4x", ctypes.addressof(name), 16, ctypes.addressof(iov), 1, 0, 0, 0) + bytes(8)
msgs = ctypes.create_string_buffer(one * 2, len(one) * 2)
sent = libc.sendmmsg(s.fileno(), msgs, 2, 0)
print("sendmmsg sent", sent if sent >= 0 else -ctypes.get_errno())
