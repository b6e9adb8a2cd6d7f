//! The I/O floor: each mstate operation's essential system calls, made
//! directly, with no other logic, on the same layout and with the same
//! bytes. It counts every call it makes.
//!
//! The sequences (derived from `crates/store/src/fs/{state,atomic,lock}.rs`,
//! `fs/log/append.rs`, and `strace -f` of the release CLI):
//!
//! - **lock acquire**: `mkdir .locks/.tmp-X`; for `pid`, `acquired`,
//!   `info.json`: `openat(O_CREAT|O_EXCL)`, `write`, `close`;
//!   `renameat2(.tmp-X, <id>.lock, RENAME_NOREPLACE)`.
//! - **lock release**: `rename(<id>.lock, .trash-X)`; 3 × `unlink`; `rmdir`.
//! - **event append**: `openat(O_RDWR|O_CREAT|O_APPEND)`, `flock(LOCK_EX)`,
//!   `fstat` (length), `pread` of the last block (the last `seq`), `write`
//!   of the line, `fdatasync`, `flock(LOCK_UN)`, `close`.
//! - **durable replace**: `openat(tmp, O_CREAT|O_EXCL)`, `write`,
//!   `fdatasync`, `close`, `rename(tmp, target)`, `openat(dir,
//!   O_DIRECTORY)`, `fsync(dir)`, `close`.
//! - **save**: lock acquire; read the current file (`openat`, `fstat`,
//!   `read`, `close`: its revision is needed); `linkat` it into `backups/`;
//!   durable replace; event append; lock release.
//! - **load**: read the file, parse the envelope.
//! - **checkpoint create**: lock acquire; read; durable replace of the
//!   checkpoint file; event append; lock release.
//!
//! Syncs: save 3 (file, directory, log), log 1, checkpoint 3, load 0.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use mstate_store::model::Envelope;
use rustix::fs::{self, AtFlags, FlockOperation, Mode, OFlags, RenameFlags, CWD};
use rustix::io;

/// Which system calls were made, and how often.
#[derive(Debug, Default, Clone)]
pub struct Counts(pub BTreeMap<&'static str, u64>);

impl Counts {
    fn add(&mut self, name: &'static str) {
        *self.0.entry(name).or_default() += 1;
    }

    /// Total calls.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `fsync` plus `fdatasync` calls.
    pub fn syncs(&self) -> u64 {
        self.get("fsync") + self.get("fdatasync")
    }

    /// Calls of one name.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// `self - before`, per name.
    pub fn since(&self, before: &Counts) -> Counts {
        let mut out = Counts::default();
        for (k, v) in &self.0 {
            let d = v - before.get(k);
            if d > 0 {
                out.0.insert(k, d);
            }
        }
        out
    }
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL in paths")
}

/// Paths and counters of a floor store for milestone `m`.
pub struct Floor {
    state: CString,
    active: CString,
    log: CString,
    lock: CString,
    backups: PathBuf,
    locks: PathBuf,
    serial: u64,
    live_backups: std::collections::VecDeque<CString>,
    /// Every call made so far.
    pub counts: Counts,
}

/// Backups kept, like mstate's default `--max-backups`.
const KEEP_BACKUPS: usize = 50;

/// Block read from the end of the log to find the last `seq`.
const TAIL_BLOCK: usize = 4096;

impl Floor {
    /// The floor store in `root`, already created.
    pub fn open(root: &Path) -> Floor {
        Floor {
            state: c(&root.join("active/m.json")),
            active: c(&root.join("active")),
            log: c(&root.join("events/milestone-m.jsonl")),
            lock: c(&root.join(".locks/m.lock")),
            backups: root.join("backups"),
            locks: root.join(".locks"),
            serial: 0,
            live_backups: Default::default(),
            counts: Counts::default(),
        }
    }

    /// A floor store in `root` (created) holding `state_file` as milestone `m`.
    pub fn create(root: &Path, state_file: &[u8]) -> std::io::Result<Floor> {
        for d in [
            "active",
            "completed",
            "sessions",
            "backups",
            "events",
            ".locks",
        ] {
            std::fs::create_dir_all(root.join(d))?;
        }
        std::fs::write(root.join("active/m.json"), state_file)?;
        Ok(Floor::open(root))
    }

    fn next(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn create_file(&mut self, path: &CString, bytes: &[u8]) -> io::Result<OwnedFd> {
        let fd = fs::open(
            path.as_c_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        self.counts.add("openat");
        self.write_all(&fd, bytes)?;
        Ok(fd)
    }

    fn write_all(&mut self, fd: &OwnedFd, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = io::write(fd, bytes)?;
            self.counts.add("write");
            bytes = &bytes[n..];
        }
        Ok(())
    }

    fn close(&mut self, fd: OwnedFd) {
        drop(fd);
        self.counts.add("close");
    }

    /// Take the lock directory, filled like mstate's.
    pub fn lock_acquire(&mut self, info_json: &[u8]) -> io::Result<()> {
        let n = self.next();
        let tmp = self.locks.join(format!(".tmp-{n}"));
        fs::mkdir(c(&tmp).as_c_str(), Mode::from_raw_mode(0o777))?;
        self.counts.add("mkdir");
        let pid = format!("{}\n", std::process::id());
        let files: [(&str, &[u8]); 3] = [
            ("pid", pid.as_bytes()),
            ("acquired", b"2026-11-24T21:03:37Z\n"),
            ("info.json", info_json),
        ];
        for (name, bytes) in files {
            let fd = self.create_file(&c(&tmp.join(name)), bytes)?;
            self.close(fd);
        }
        fs::renameat_with(
            CWD,
            c(&tmp).as_c_str(),
            CWD,
            self.lock.as_c_str(),
            RenameFlags::NOREPLACE,
        )?;
        self.counts.add("renameat2");
        Ok(())
    }

    /// Release the lock: rename it aside, then delete it.
    pub fn lock_release(&mut self) -> io::Result<()> {
        let n = self.next();
        let trash = self.locks.join(format!(".trash-{n}"));
        fs::rename(self.lock.as_c_str(), c(&trash).as_c_str())?;
        self.counts.add("rename");
        for name in ["pid", "acquired", "info.json"] {
            fs::unlink(c(&trash.join(name)).as_c_str())?;
            self.counts.add("unlink");
        }
        fs::rmdir(c(&trash).as_c_str())?;
        self.counts.add("rmdir");
        Ok(())
    }

    /// Read the whole state file.
    pub fn read_state(&mut self) -> io::Result<Vec<u8>> {
        let fd = fs::open(
            self.state.as_c_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        self.counts.add("openat");
        let len = fs::fstat(&fd)?.st_size as usize;
        self.counts.add("fstat");
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = io::read(&fd, &mut buf[got..])?;
            self.counts.add("read");
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        self.close(fd);
        Ok(buf)
    }

    /// Write `bytes` to `target` through a synced temp file and a rename,
    /// then sync the directory `dir`.
    fn replace(&mut self, target: &CString, dir: &CString, bytes: &[u8]) -> io::Result<()> {
        let n = self.next();
        let mut tmp = target.as_bytes().to_vec();
        tmp.extend_from_slice(format!(".tmp.{n}").as_bytes());
        let tmp = CString::new(tmp).expect("no NUL");
        let fd = self.create_file(&tmp, bytes)?;
        fs::fdatasync(&fd)?;
        self.counts.add("fdatasync");
        self.close(fd);
        fs::rename(tmp.as_c_str(), target.as_c_str())?;
        self.counts.add("rename");
        let d = fs::open(
            dir.as_c_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        self.counts.add("openat");
        fs::fsync(&d)?;
        self.counts.add("fsync");
        self.close(d);
        Ok(())
    }

    /// Append one line to the log, durably, as mstate does: written under
    /// the log's `flock` (which fixes its place and `seq`), synced after
    /// the unlock so concurrent appenders' syncs overlap.
    pub fn append(&mut self, line: &[u8]) -> io::Result<()> {
        self.append_with(line, false)
    }

    /// [`Floor::append`] with the `fdatasync` under the `flock`, as mstate
    /// did before: concurrent appenders' syncs cannot overlap. Kept to show
    /// what moving the sync gained under contention.
    pub fn append_sync_under_lock(&mut self, line: &[u8]) -> io::Result<()> {
        self.append_with(line, true)
    }

    fn append_with(&mut self, line: &[u8], sync_under_lock: bool) -> io::Result<()> {
        let fd = fs::open(
            self.log.as_c_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        self.counts.add("openat");
        fs::flock(&fd, FlockOperation::LockExclusive)?;
        self.counts.add("flock");
        let len = fs::fstat(&fd)?.st_size as u64;
        self.counts.add("fstat");
        let mut tail = [0u8; TAIL_BLOCK];
        let from = len.saturating_sub(TAIL_BLOCK as u64);
        let got = io::pread(&fd, &mut tail[..(len - from) as usize], from)?;
        self.counts.add("pread64");
        std::hint::black_box(&tail[..got]);
        self.write_all(&fd, line)?;
        if sync_under_lock {
            fs::fdatasync(&fd)?;
            self.counts.add("fdatasync");
        }
        fs::flock(&fd, FlockOperation::Unlock)?;
        self.counts.add("flock");
        if !sync_under_lock {
            fs::fdatasync(&fd)?;
            self.counts.add("fdatasync");
        }
        self.close(fd);
        Ok(())
    }

    /// `save`: the new state file and the `state_saved` line are given,
    /// encoded as mstate encodes them.
    pub fn save(&mut self, info_json: &[u8], file: &[u8], line: &[u8]) -> io::Result<()> {
        self.lock_acquire(info_json)?;
        let old = self.read_state()?;
        std::hint::black_box(&old);
        self.commit(file, line)
    }

    /// `update`: like `save`, plus what any read-modify-write must do: parse
    /// the current envelope, edit it and encode it again.
    pub fn update(&mut self, info_json: &[u8], line: &[u8], serial: u64) -> io::Result<()> {
        self.lock_acquire(info_json)?;
        let old = self.read_state()?;
        let mut env: Envelope = serde_json::from_slice(&old).map_err(|_| io::Errno::INVAL)?;
        if let Some(o) = env.state.as_object_mut() {
            o.insert("phase".into(), format!("phase-{serial}").into());
        }
        env.revision += 1;
        let mut file = serde_json::to_vec_pretty(&env).map_err(|_| io::Errno::INVAL)?;
        file.push(b'\n');
        self.commit(&file, line)
    }

    /// The rest of a save under the lock: link the outgoing state file as
    /// a backup, replace it durably, log, release.
    fn commit(&mut self, file: &[u8], line: &[u8]) -> io::Result<()> {
        let n = self.next();
        let backup = c(&self.backups.join(format!("m-{n:020}-r{n}.json")));
        fs::linkat(
            CWD,
            self.state.as_c_str(),
            CWD,
            backup.as_c_str(),
            AtFlags::empty(),
        )?;
        self.counts.add("linkat");
        self.live_backups.push_back(backup);
        let (state, active) = (self.state.clone(), self.active.clone());
        self.replace(&state, &active, file)?;
        self.append(line)?;
        self.lock_release()
    }

    /// Remove backups beyond the bound mstate keeps (50): at that steady
    /// state every save of mstate unlinks its oldest backup, so the floor
    /// does too, inside the timed save and counted. (Finding the oldest
    /// costs mstate a directory listing; the floor knows it.)
    pub fn trim_backups(&mut self) {
        while self.live_backups.len() > KEEP_BACKUPS {
            if let Some(b) = self.live_backups.pop_front() {
                let _ = fs::unlink(b.as_c_str());
                self.counts.add("unlink");
            }
        }
    }

    /// `load`: read and parse the envelope; returns its revision (the
    /// envelope is dropped here, as the library's load result is by its
    /// caller, so both sides pay for freeing it).
    pub fn load(&mut self) -> Result<u64, String> {
        let bytes = self.read_state().map_err(|e| e.to_string())?;
        let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(env.revision)
    }

    /// `checkpoint create` (replacing checkpoint `c`).
    pub fn checkpoint(&mut self, info_json: &[u8], line: &[u8]) -> io::Result<()> {
        self.lock_acquire(info_json)?;
        let bytes = self.read_state()?;
        let target = c(&self.backups.join("m-checkpoint-c.json"));
        let dir = c(&self.backups);
        self.replace(&target, &dir, &bytes)?;
        self.append(line)?;
        self.lock_release()
    }

    /// `lock acquire` then `lock release`.
    pub fn lock(&mut self, info_json: &[u8]) -> io::Result<()> {
        self.lock_acquire(info_json)?;
        self.lock_release()
    }
}

/// An `info.json` the size of mstate's.
pub fn info_json() -> Vec<u8> {
    let info = serde_json::json!({
        "id": format!("{}-18eb1dd099004a74-0", std::process::id()),
        "milestone_id": "m",
        "operation": "save",
        "who": "root@vm",
        "pid": std::process::id(),
        "created": "2026-11-24T23:07:38.195539Z",
        "pid_start": 770505,
        "boot_id": "0afa7a05-8ad0-4583-a54f-11d802e8162c",
        "host": "vm",
        "ttl_secs": null,
        "seed": false,
    });
    serde_json::to_vec_pretty(&info).expect("encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_ops_make_the_documented_calls() {
        let dir = std::env::temp_dir().join(format!("mstate-floor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = crate::data::state_file("m", 1, &crate::data::state(1_000));
        let line = crate::data::event_line("state_saved", &crate::data::saved_data(2), 2);
        let info = info_json();
        let mut f = Floor::create(&dir, &file).unwrap();
        let before = f.counts.clone();
        f.save(&info, &file, &line).unwrap();
        let save = f.counts.since(&before);
        assert_eq!(save.syncs(), 3);
        assert_eq!(save.get("renameat2"), 1);
        assert_eq!(save.get("linkat"), 1);
        let before = f.counts.clone();
        f.append(&line).unwrap();
        assert_eq!(f.counts.since(&before).syncs(), 1);
        assert_eq!(f.load().unwrap(), 1);
        f.checkpoint(&info, &line).unwrap();
        f.lock(&info).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
