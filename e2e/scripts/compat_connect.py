"""A TCP connect to 127.0.0.1:PORT by a 32-bit socketcall (int 0x80) from a
64-bit process.

The syscall tracepoints do not fire for compat system calls; the kernel's
cgroup connect4 hook does. The socket is made natively; code, the argument
block and the address live in one page below 4 GiB (MAP_32BIT). Prints the
call's result (0 or -errno).
"""
import ctypes, mmap, socket, struct, sys

port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
m = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
assert base < 2**32, hex(base)
sockaddr = struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton("127.0.0.1") + bytes(8)
m[256:256 + len(sockaddr)] = sockaddr
m[512:524] = struct.pack("<III", s.fileno(), base + 256, len(sockaddr))
SYS_SOCKETCALL, SYS_CONNECT = 102, 3
# push rbx; mov eax, socketcall; mov ebx, SYS_CONNECT; mov ecx, args; int 0x80; pop rbx; ret
code = (b"\x53" + b"\xb8" + struct.pack("<I", SYS_SOCKETCALL) + b"\xbb" + struct.pack("<I", SYS_CONNECT)
        + b"\xb9" + struct.pack("<I", base + 512) + b"\xcd\x80\x5b\xc3")
m[0:len(code)] = code
print("socketcall connect", ctypes.CFUNCTYPE(ctypes.c_int)(base)())
