"""A failed execve whose file name lies in a page not yet resident.

The name (/nonexistent/wt-unresident-exec) is in a file mapped but never touched
from user space: the entry tracepoint cannot fault it in to read it, and a
failed exec has no kernel name (sched_process_exec does not fire). The kernel
copies the name (faulting the page in) before it fails. Prints the result.
"""
import ctypes, mmap, tempfile

libc = ctypes.CDLL(None, use_errno=True)
name = b"/nonexistent/wt-unresident-exec\0"
f = tempfile.TemporaryFile()
f.write(name + bytes(4096 - len(name)))
f.flush()
m = mmap.mmap(f.fileno(), 4096, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
# The pointer only: the page is not read here.
address = ctypes.addressof(ctypes.c_char.from_buffer(m))
argv = (ctypes.c_char_p * 2)(b"wt-unresident", None)
envp = (ctypes.c_char_p * 1)(None)
rc = libc.execve(ctypes.c_void_p(address), argv, envp)
print("unresident exec", -ctypes.get_errno() if rc != 0 else 0)
