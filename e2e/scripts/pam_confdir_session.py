"""An ordinary user's own PAM transaction for another user name (argv[1]):
pam_start_confdir with a configuration of hers that permits everything, then
authenticate, open a session, run /usr/bin/id inside it, close and end.
"""
import ctypes, os, sys, tempfile

conf = tempfile.mkdtemp()
with open(os.path.join(conf, "wt-fake"), "w") as f:
    f.write("auth required pam_permit.so\naccount required pam_permit.so\nsession required pam_permit.so\n")
pam = ctypes.CDLL("libpam.so.0")
CONV = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


class PamConv(ctypes.Structure):
    _fields_ = [("conv", CONV), ("appdata_ptr", ctypes.c_void_p)]


PAM_CONV_ERR = 19
conv = PamConv(CONV(lambda *_: PAM_CONV_ERR), None)  # pam_permit never asks
handle = ctypes.c_void_p()
rc = pam.pam_start_confdir(b"wt-fake", sys.argv[1].encode(), ctypes.byref(conv), conf.encode(), ctypes.byref(handle))
assert rc == 0, ("pam_start_confdir", rc)
for step in (pam.pam_authenticate, pam.pam_acct_mgmt, pam.pam_open_session):
    rc = step(handle, 0)
    assert rc == 0, (step.__name__, rc)
os.spawnv(os.P_WAIT, "/usr/bin/id", ["id", "-un"])
pam.pam_close_session(handle, 0)
pam.pam_end(handle, 0)
print("own PAM session done")
