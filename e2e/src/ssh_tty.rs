//! An ssh client that types its answers: ssh reads passwords and
//! keyboard-interactive answers from its terminal, so it runs on a
//! pseudo-terminal and each answer is written after its prompt appears
//! (sshpass gives up after one wrong password; a typo then the right one, or
//! several wrong keyboard-interactive answers, need a terminal).

use std::io::{Read as _, Write as _};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{PATIENCE, Sshd, kill, wait_with_deadline};

/// How the client authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Password,
    KeyboardInteractive,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::KeyboardInteractive => "keyboard-interactive",
        }
    }
}

/// A pseudo-terminal pair: (controller, terminal).
fn open_pty() -> (OwnedFd, OwnedFd) {
    let mut controller = -1;
    let mut terminal = -1;
    // SAFETY: openpty writes two descriptors into the integers it is given; the
    // name, termios and window size pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &raw mut controller,
            &raw mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened for us and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(controller), OwnedFd::from_raw_fd(terminal)) }
}

impl Sshd {
    /// `ssh user@127.0.0.1 true` with only `method`, typing `answers[i]` at the
    /// i-th password prompt (one prompt per answer: `NumberOfPasswordPrompts`).
    /// Returns (exit code, what the terminal showed).
    #[must_use]
    pub fn ssh_typing(&self, user: &str, method: Method, answers: &[&str]) -> (i32, String) {
        let (controller, terminal) = open_pty();
        let mut args = self.common_options();
        args.extend([
            "-o".to_string(),
            "PubkeyAuthentication=no".into(),
            "-o".into(),
            format!("PreferredAuthentications={}", method.name()),
            "-o".into(),
            format!("NumberOfPasswordPrompts={}", answers.len().max(1)),
            "-l".into(),
            user.into(),
            "127.0.0.1".into(),
            "true".into(),
        ]);
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
        let mut command = Command::new("ssh");
        command
            .args(&args)
            .stdin(stdio(&terminal))
            .stdout(stdio(&terminal))
            .stderr(stdio(&terminal));
        // SAFETY: between fork and exec only async-signal-safe calls: a new
        // session whose controlling terminal is the pseudo-terminal on stdin.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("ssh");
        // The terminal must stay open only in ssh: the reader sees EIO once it exits.
        drop(command);
        drop(terminal);
        let mut reader = std::fs::File::from(controller.try_clone().expect("dup the controller"));
        let mut writer = std::fs::File::from(controller);
        let shown = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = shown.clone();
        let read_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once ssh has exited and the terminal has no process left.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut seen = 0usize;
        let start = Instant::now();
        let mut answered = 0;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            let text = String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
            if let Some(at) = text[seen.min(text.len())..].find("assword:") {
                seen += at + "assword:".len();
                // ssh turns echo off just after printing the prompt.
                std::thread::sleep(Duration::from_millis(100));
                let answer = answers.get(answered).copied().unwrap_or("");
                answered += 1;
                writeln!(writer, "{answer}").expect("type the answer");
            }
            if start.elapsed() > PATIENCE {
                kill(&mut child, libc::SIGKILL);
                panic!("ssh as {user:?} did not finish: {text:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = wait_with_deadline(&mut child, Duration::from_secs(1));
        drop(writer);
        let _ = read_thread.join();
        let text = String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
        assert!(
            answers.is_empty() || answered > 0,
            "ssh as {user:?} asked for no password: {text:?}"
        );
        (status.code().unwrap_or(-1), text)
    }

    /// `ssh user@127.0.0.1 true` with alice's key, which `user`'s authorized keys
    /// list too. Returns the exit code.
    #[must_use]
    pub fn ssh_key_as(&self, user: &str) -> i32 {
        let public = self.dir.0.join("alice_key.pub");
        std::fs::copy(&public, self.dir.0.join(format!("{user}.keys"))).expect("authorize the key");
        let key = self.dir.0.join("alice_key").display().to_string();
        let mut args = vec!["-i".to_string(), key];
        args.extend(self.common_options());
        args.extend(
            [
                "-o",
                "BatchMode=yes",
                "-o",
                "PreferredAuthentications=publickey",
                "-l",
                user,
                "127.0.0.1",
                "true",
            ]
            .iter()
            .map(ToString::to_string),
        );
        let out = Command::new("ssh")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("ssh");
        out.status.code().unwrap_or(-1)
    }
}
