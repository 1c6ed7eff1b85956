"""A 32-bit execve (int 0x80) from a 64-bit process: /bin/sleep 2.

The syscall tracepoints do not fire for compat system calls; the kernel's
sched_process_exec does. Code and strings live in one page below 4 GiB
(MAP_32BIT) so the 32-bit registers can hold their addresses.
"""
import ctypes, mmap, struct
m = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
assert base < 2**32, hex(base)
strings = [b'/bin/sleep\0', b'sleep\0', b'2\0']
at, addrs = 256, []
for s in strings:
    m[at:at + len(s)] = s; addrs.append(base + at); at += 32
argv = base + at
m[at:at + 12] = struct.pack('<III', addrs[1], addrs[2], 0)
code = b'\xb8\x0b\x00\x00\x00' + b'\xbb' + struct.pack('<I', addrs[0]) + b'\xb9' + struct.pack('<I', argv) + b'\x31\xd2\xcd\x80\xc3'
m[0:len(code)] = code
print('compat execve returned', ctypes.CFUNCTYPE(ctypes.c_int)(base)())
