"""A TCP connect to 127.0.0.1:PORT through io_uring (IORING_OP_CONNECT).

No connect system call is made, so the connect tracepoints never fire; the
kernel's cgroup connect4 hook does. Prints the completion's result (0 or -errno).
"""
import ctypes, mmap, socket, struct, sys

port = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_IO_URING_SETUP, SYS_IO_URING_ENTER = 425, 426
IORING_OP_CONNECT, IORING_ENTER_GETEVENTS = 16, 1
IORING_OFF_SQ_RING, IORING_OFF_CQ_RING, IORING_OFF_SQES = 0, 0x8000000, 0x10000000

params = ctypes.create_string_buffer(120)
ring = libc.syscall(SYS_IO_URING_SETUP, 4, params)
if ring < 0:
    sys.exit(f"io_uring_setup failed: errno {ctypes.get_errno()}")
sq_entries, cq_entries = struct.unpack_from("<2I", params, 0)
sq_head, sq_tail, sq_mask, _, _, _, sq_array = struct.unpack_from("<7I", params, 40)
cq_head, cq_tail, cq_mask, _, _, cq_cqes = struct.unpack_from("<6I", params, 80)
rw = mmap.PROT_READ | mmap.PROT_WRITE
sq = mmap.mmap(ring, sq_array + sq_entries * 4, mmap.MAP_SHARED, rw, offset=IORING_OFF_SQ_RING)
cq = mmap.mmap(ring, cq_cqes + cq_entries * 16, mmap.MAP_SHARED, rw, offset=IORING_OFF_CQ_RING)
sqes = mmap.mmap(ring, sq_entries * 64, mmap.MAP_SHARED, rw, offset=IORING_OFF_SQES)

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sockaddr = struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton("127.0.0.1") + bytes(8)
addr = ctypes.create_string_buffer(sockaddr, len(sockaddr))

sqe = bytearray(64)
struct.pack_into("<BBHi", sqe, 0, IORING_OP_CONNECT, 0, 0, s.fileno())
struct.pack_into("<Q", sqe, 8, len(sockaddr))  # addr2: the address length
struct.pack_into("<Q", sqe, 16, ctypes.addressof(addr))
struct.pack_into("<Q", sqe, 32, 7)  # user_data
sqes[0:64] = bytes(sqe)
tail = struct.unpack_from("<I", sq, sq_tail)[0]
mask = struct.unpack_from("<I", sq, sq_mask)[0]
struct.pack_into("<I", sq, sq_array + (tail & mask) * 4, 0)
struct.pack_into("<I", sq, sq_tail, tail + 1)
if libc.syscall(SYS_IO_URING_ENTER, ring, 1, 1, IORING_ENTER_GETEVENTS, None, 0) < 0:
    sys.exit(f"io_uring_enter failed: errno {ctypes.get_errno()}")
head = struct.unpack_from("<I", cq, cq_head)[0]
cmask = struct.unpack_from("<I", cq, cq_mask)[0]
user_data, res, _ = struct.unpack_from("<QiI", cq, cq_cqes + (head & cmask) * 16)
print("io_uring connect", res)
