"""A connect to 127.0.0.1:PORT whose address lies in a page not yet resident.

The address is in a file mapped but never touched from user space: the entry
tracepoint cannot fault it in to read it; the kernel copies it (faulting the
page in) and its cgroup connect4 hook sees that copy. Prints the result.
"""
import ctypes, mmap, socket, struct, sys, tempfile

port = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sockaddr = struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton("127.0.0.1") + bytes(8)
f = tempfile.TemporaryFile()
f.write(sockaddr + bytes(4096 - len(sockaddr)))
f.flush()
m = mmap.mmap(f.fileno(), 4096, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
# The pointer only: the page is not read here.
address = ctypes.addressof(ctypes.c_char.from_buffer(m))
rc = libc.connect(s.fileno(), ctypes.c_void_p(address), len(sockaddr))
print("unresident connect", rc if rc == 0 else -ctypes.get_errno())
