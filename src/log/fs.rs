//! The file layer under the log: a small [`Fs`] trait with the real implementation
//! ([`RealFs`]) and an in-memory, fault-injecting twin ([`FaultFs`]) for tests.
//!
//! The log needs only what this trait offers: open or create a file, positional reads and
//! writes, `fdatasync`, `fallocate`, `ftruncate`, an OFD lock, and on directories `mkdir`,
//! `renameat2(RENAME_NOREPLACE)`, `unlink`, `fsync` and a listing. Every call returns a
//! plain [`io::Result`]; the log maps the errors.
//!
//! [`FaultFs`] models what a power cut can leave behind: file data is volatile until the
//! file's `fdatasync`, names (create, rename, unlink, mkdir) until their directory's
//! `fsync`. [`FaultFs::crash`] returns the state after a simulated power cut: the durable
//! image plus a random subset of the volatile operations, torn at 512-byte sectors. It also
//! fails the Nth `fdatasync` with `EIO` or any growth past a byte budget with `ENOSPC`, and
//! records every operation ([`FaultFs::ops`]) so that tests can check the order of syncs.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Owner, permission bits and kind of a file or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// Owner uid.
    pub uid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Size in bytes.
    pub len: u64,
}

/// An OFD lock request on byte 0 of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// `F_RDLCK`: any number of holders.
    Shared,
    /// `F_WRLCK`: one holder, no shared ones.
    Exclusive,
    /// `F_UNLCK`.
    Unlock,
}

/// An open file of an [`Fs`].
#[allow(clippy::len_without_is_empty)] // a file's size, not a collection
pub trait FsFile: Send + Sync + std::fmt::Debug {
    /// Writes all of `data` at `off`.
    fn pwrite(&self, off: u64, data: &[u8]) -> io::Result<()>;
    /// Reads up to `buf.len()` bytes at `off`; fewer only at end of file.
    fn pread(&self, off: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// `fdatasync`: the file's data (and its size) reach stable storage.
    fn fdatasync(&self) -> io::Result<()>;
    /// Allocates blocks for `[0, len)` (growing the file to `len`), so that later writes
    /// there cannot fail for lack of space.
    fn fallocate(&self, len: u64) -> io::Result<()>;
    /// Current size.
    fn len(&self) -> io::Result<u64>;
    /// `ftruncate`.
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// A non-blocking OFD lock on byte 0 (an exclusive lock held by this description is
    /// converted in place by a shared request). `Ok(false)` if another description holds
    /// a conflicting lock.
    fn lock(&self, kind: LockKind) -> io::Result<bool>;
    /// Owner and permission bits.
    fn meta(&self) -> io::Result<FileMeta>;
    /// Advice that `[off, off + len)` will be read soon (`POSIX_FADV_WILLNEED`: the kernel
    /// starts reading it in the background). Only advice: the default does nothing.
    fn will_need(&self, _off: u64, _len: u64) {}
    /// Reads what of `[off, off + buf.len())` is in the page cache now, from `off` on,
    /// without waiting for the disk (`preadv2(RWF_NOWAIT)`); the byte count. 0 when nothing
    /// is, or when it cannot tell (the default; errors are for `pread` to report).
    fn pread_cached(&self, _off: u64, _buf: &mut [u8]) -> usize {
        0
    }
}

/// The file-system calls the log makes.
pub trait Fs: Send + Sync + std::fmt::Debug {
    /// Opens an existing file read-write.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>>;
    /// Creates a new file (`O_EXCL`) read-write with exactly `mode` (no umask).
    fn create(&self, path: &Path, mode: u32) -> io::Result<Arc<dyn FsFile>>;
    /// Creates a directory with exactly `mode` (no umask).
    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// `renameat2(RENAME_NOREPLACE)`: `EEXIST` if `to` exists.
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `unlink`.
    fn unlink(&self, path: &Path) -> io::Result<()>;
    /// `fsync` of a directory: its entries reach stable storage.
    fn fsync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The names in a directory (no `.` or `..`).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// `stat` without following a final symlink.
    fn stat(&self, path: &Path) -> io::Result<FileMeta>;
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

// ---------------------------------------------------------------------------------------
// RealFs

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile(File);

/// `fcntl(fd, F_OFD_SETLK, {kind, SEEK_SET, 0, 1})`, in the style of the queue segment's
/// locks: OFD locks belong to the open file description, so two handles in one process
/// conflict like two processes, and the kernel drops them when the description closes
/// (process death included).
fn ofd_setlk(fd: &File, kind: LockKind) -> io::Result<bool> {
    let ty = match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
        LockKind::Unlock => libc::F_UNLCK,
    };
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value (l_pid must be 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 1;
    // SAFETY: `fd` is an open descriptor; `fl` is a valid flock that outlives the call.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if r == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

fn meta_of(m: &std::fs::Metadata) -> FileMeta {
    FileMeta { uid: m.uid(), mode: m.mode() & 0o7777, is_dir: m.is_dir(), len: m.len() }
}

impl FsFile for RealFile {
    fn pwrite(&self, off: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, off)
    }
    fn pread(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.0.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
    fn fdatasync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn fallocate(&self, len: u64) -> io::Result<()> {
        // A file-size limit (RLIMIT_FSIZE) would turn the allocation into SIGXFSZ, which
        // kills the process by default: report it as EFBIG before asking.
        let lim = rustix::process::getrlimit(rustix::process::Resource::Fsize);
        if lim.current.is_some_and(|cur| len > cur) {
            return Err(errno(libc::EFBIG));
        }
        match rustix::fs::fallocate(self.0.as_fd(), rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // A file system without fallocate: a plain size change (a full disk then shows
            // as ENOSPC on a later write, still never as a signal: log files are not mapped).
            Err(rustix::io::Errno::OPNOTSUPP) => {
                if self.len()? < len {
                    self.0.set_len(len)?;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn lock(&self, kind: LockKind) -> io::Result<bool> {
        ofd_setlk(&self.0, kind)
    }
    fn meta(&self) -> io::Result<FileMeta> {
        Ok(meta_of(&self.0.metadata()?))
    }
    fn pread_cached(&self, off: u64, buf: &mut [u8]) -> usize {
        let mut bufs = [io::IoSliceMut::new(buf)];
        rustix::io::preadv2(self.0.as_fd(), &mut bufs, off, rustix::io::ReadWriteFlags::NOWAIT).unwrap_or(0)
    }
    fn will_need(&self, off: u64, len: u64) {
        // Advice only: an error (none is expected for a regular file) changes nothing.
        let _ = rustix::fs::fadvise(self.0.as_fd(), off, std::num::NonZeroU64::new(len), rustix::fs::Advice::WillNeed);
    }
}

impl Fs for RealFs {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let f = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
        Ok(Arc::new(RealFile(f)))
    }
    fn create(&self, path: &Path, mode: u32) -> io::Result<Arc<dyn FsFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        // The umask may have cleared bits of `mode`; set exactly what was asked.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        Ok(Arc::new(RealFile(f)))
    }
    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::DirBuilder::new().mode(mode).create(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, rustix::fs::RenameFlags::NOREPLACE)
            .map_err(io::Error::from)
    }
    fn unlink(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn fsync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            if let Some(name) = e?.file_name().to_str() {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }
    fn stat(&self, path: &Path) -> io::Result<FileMeta> {
        Ok(meta_of(&std::fs::symlink_metadata(path)?))
    }
}

// ---------------------------------------------------------------------------------------
// FaultFs

/// One operation recorded by [`FaultFs`], with the path the file was opened under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `mkdir`.
    Mkdir(PathBuf),
    /// A new file.
    Create(PathBuf),
    /// `pwrite` of `len` bytes at `off`.
    Write {
        /// File.
        path: PathBuf,
        /// Offset.
        off: u64,
        /// Length.
        len: u64,
    },
    /// `fdatasync`.
    Fdatasync(PathBuf),
    /// `fallocate` to this length.
    Fallocate(PathBuf, u64),
    /// `ftruncate` to this length.
    Truncate(PathBuf, u64),
    /// `renameat2(RENAME_NOREPLACE)` that succeeded.
    Rename(PathBuf, PathBuf),
    /// `unlink`.
    Unlink(PathBuf),
    /// `fsync` of a directory.
    FsyncDir(PathBuf),
}

#[derive(Clone, Debug)]
enum DataOp {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Clone, Debug)]
struct Inode {
    is_dir: bool,
    uid: u32,
    mode: u32,
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<DataOp>,
    /// Lock holders: handle id -> exclusive.
    locks: HashMap<u64, bool>,
}

#[derive(Clone, Debug)]
enum MetaOp {
    Link(PathBuf, usize),
    Rename(PathBuf, PathBuf),
    Unlink(PathBuf),
}

#[derive(Clone, Debug, Default)]
struct State {
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    /// Name changes not yet made durable by an fsync of their directory: (directory, op).
    pending_meta: Vec<(PathBuf, MetaOp)>,
    inodes: Vec<Inode>,
    ops: Vec<Op>,
    syncs: u64,
    fail_sync_at: Option<u64>,
    space_left: Option<u64>,
    next_handle: u64,
    /// A page cache that starts empty ([`FaultFs::cold_page_cache`]): the 4 KiB pages
    /// (inode, page) that a read or a read-ahead advice brought in. `None`: every
    /// `pread_cached` finds half of its range cached.
    cached: Option<std::collections::HashSet<(usize, u64)>>,
    /// `pread_cached` calls that found less than all of their range cached.
    cache_misses: u64,
}

/// An in-memory file system that forgets what was not synced when it "crashes".
///
/// Cloning gives another handle on the same state. `/` always exists; other directories
/// must be made with `mkdir`.
#[derive(Clone, Debug, Default)]
pub struct FaultFs {
    st: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct FaultFile {
    st: Arc<Mutex<State>>,
    ino: usize,
    handle: u64,
}

impl State {
    /// The current name of an inode (for the op log: a renamed file shows its new name).
    fn name_of(&self, ino: usize) -> PathBuf {
        self.names.iter().find(|(_, i)| **i == ino).map_or_else(|| PathBuf::from("<unlinked>"), |(p, _)| p.clone())
    }
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"))
}

/// A small deterministic generator (splitmix64) for the crash simulation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

fn apply(data: &mut Vec<u8>, op: &DataOp) {
    match op {
        DataOp::Write(off, bytes) => {
            let end = *off as usize + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[*off as usize..end].copy_from_slice(bytes);
        }
        DataOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

/// The 512-byte sector size at which [`FaultFs::crash`] tears writes.
pub const SECTOR: u64 = 512;

impl FaultFs {
    /// An empty file system (only `/`).
    pub fn new() -> FaultFs {
        FaultFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every operation so far, in order.
    pub fn ops(&self) -> Vec<Op> {
        self.lock().ops.clone()
    }

    /// Forgets the recorded operations.
    pub fn clear_ops(&self) {
        self.lock().ops.clear();
    }

    /// Makes the `n`th `fdatasync` from now (1 = the next one) fail with `EIO`; the data stays
    /// volatile.
    pub fn fail_sync(&self, n: u64) {
        let mut st = self.lock();
        st.fail_sync_at = Some(st.syncs + n);
    }

    /// From now on, models a page cache that starts empty: `pread` and `will_need` bring
    /// pages in, and `pread_cached` returns only what is in ([`cache_misses`](Self::cache_misses)
    /// counts the calls that found less than they asked for). Writes bring nothing in (as if
    /// written pages had been evicted).
    pub fn cold_page_cache(&self) {
        let mut st = self.lock();
        st.cached = Some(Default::default());
        st.cache_misses = 0;
    }

    /// `pread_cached` calls that found less than all of their range cached since
    /// [`cold_page_cache`](Self::cold_page_cache).
    pub fn cache_misses(&self) -> u64 {
        self.lock().cache_misses
    }

    /// Lets files grow by `n` more bytes in total, then fails growth with `ENOSPC`.
    pub fn space_left(&self, n: Option<u64>) {
        self.lock().space_left = n;
    }

    /// The current (not necessarily durable) content of a file.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        st.names.get(path).map(|&i| st.inodes[i].current.clone())
    }

    /// Overwrites bytes of a file durably (tests: damage on the medium).
    pub fn damage(&self, path: &Path, off: u64, bytes: &[u8]) {
        let mut st = self.lock();
        let i = *st.names.get(path).expect("damage: no such file");
        let ino = &mut st.inodes[i];
        let op = DataOp::Write(off, bytes.to_vec());
        apply(&mut ino.current, &op);
        apply(&mut ino.durable, &op);
    }

    /// Sets owner and permission bits of a file or directory (tests: hostile owners).
    pub fn set_owner_mode(&self, path: &Path, uid: Option<u32>, mode: Option<u32>) {
        let mut st = self.lock();
        let i = *st.names.get(path).expect("set_owner_mode: no such file");
        if let Some(u) = uid {
            st.inodes[i].uid = u;
        }
        if let Some(m) = mode {
            st.inodes[i].mode = m;
        }
    }

    /// The state after a power cut now: durable names and data, plus a random subset (from
    /// `seed`) of the volatile operations. Name changes not yet fsynced with their directory
    /// are each kept or lost, in their order; unsynced writes are each kept or lost per
    /// 512-byte sector and applied in a random order (size changes stay in place, as
    /// barriers between the writes around them). No locks, no faults, no recorded ops.
    pub fn crash(&self, seed: u64) -> FaultFs {
        let st = self.lock();
        let mut rng = Rng::new(seed);
        let mut names = st.durable_names.clone();
        for (_, op) in &st.pending_meta {
            if rng.one_in(2) {
                continue;
            }
            match op {
                MetaOp::Link(p, i) => {
                    // A name is only reachable if its directory is.
                    if names.contains_key(&parent(p)) || parent(p) == Path::new("/") {
                        names.entry(p.clone()).or_insert(*i);
                    }
                }
                MetaOp::Rename(a, b) => {
                    if let Some(i) = names.remove(a) {
                        names.insert(b.clone(), i);
                    }
                }
                MetaOp::Unlink(p) => {
                    names.remove(p);
                }
            }
        }
        let mut inodes = st.inodes.clone();
        for ino in &mut inodes {
            let mut img = ino.durable.clone();
            let mut group: Vec<DataOp> = Vec::new();
            let flush = |group: &mut Vec<DataOp>, img: &mut Vec<u8>, rng: &mut Rng| {
                // Random order: Fisher-Yates.
                for i in (1..group.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    group.swap(i, j);
                }
                for op in group.drain(..) {
                    let DataOp::Write(off, bytes) = op else { continue };
                    // Torn per sector: each sector piece of the write is kept or lost.
                    let end = off + bytes.len() as u64;
                    let mut s = off;
                    while s < end {
                        let e = ((s / SECTOR) + 1) * SECTOR;
                        let e = e.min(end);
                        if rng.below(3) != 0 {
                            let piece = &bytes[(s - off) as usize..(e - off) as usize];
                            apply(img, &DataOp::Write(s, piece.to_vec()));
                        }
                        s = e;
                    }
                }
            };
            for op in &ino.pending {
                match op {
                    DataOp::Write(..) => group.push(op.clone()),
                    DataOp::SetLen(_) => {
                        flush(&mut group, &mut img, &mut rng);
                        if rng.one_in(2) {
                            apply(&mut img, op);
                        }
                    }
                }
            }
            flush(&mut group, &mut img, &mut rng);
            ino.durable = img.clone();
            ino.current = img;
            ino.pending.clear();
            ino.locks.clear();
        }
        let st2 = State {
            names: names.clone(),
            durable_names: names,
            pending_meta: Vec::new(),
            inodes,
            ops: Vec::new(),
            syncs: 0,
            fail_sync_at: None,
            space_left: None,
            next_handle: st.next_handle,
            // A crash empties the page cache; the model goes back to its default.
            cached: None,
            cache_misses: 0,
        };
        FaultFs { st: Arc::new(Mutex::new(st2)) }
    }

    fn new_inode(st: &mut State, is_dir: bool, mode: u32) -> usize {
        st.inodes.push(Inode {
            is_dir,
            uid: rustix::process::geteuid().as_raw(),
            mode,
            durable: Vec::new(),
            current: Vec::new(),
            pending: Vec::new(),
            locks: HashMap::new(),
        });
        st.inodes.len() - 1
    }

    fn dir_exists(st: &State, p: &Path) -> bool {
        p == Path::new("/") || st.names.get(p).is_some_and(|&i| st.inodes[i].is_dir)
    }
}

impl State {
    fn grow(&mut self, ino: usize, new_len: u64) -> io::Result<()> {
        let cur = self.inodes[ino].current.len() as u64;
        if new_len > cur {
            if let Some(left) = self.space_left {
                if new_len - cur > left {
                    return Err(errno(libc::ENOSPC));
                }
                self.space_left = Some(left - (new_len - cur));
            }
        }
        Ok(())
    }
}

/// The page size of the twin's page cache.
const PAGE: u64 = 4096;

/// The pages `[off, off + len)` touches.
fn pages(off: u64, len: u64) -> std::ops::Range<u64> {
    off / PAGE..(off + len).div_ceil(PAGE)
}

impl FsFile for FaultFile {
    fn pwrite(&self, off: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        st.grow(self.ino, off + data.len() as u64)?;
        let path = st.name_of(self.ino);
        st.ops.push(Op::Write { path, off, len: data.len() as u64 });
        let op = DataOp::Write(off, data.to_vec());
        let ino = &mut st.inodes[self.ino];
        apply(&mut ino.current, &op);
        ino.pending.push(op);
        Ok(())
    }
    fn pread(&self, off: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        let data = &st.inodes[self.ino].current;
        if off >= data.len() as u64 {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - off as usize);
        buf[..n].copy_from_slice(&data[off as usize..off as usize + n]);
        let ino = self.ino;
        if let Some(c) = st.cached.as_mut() {
            c.extend(pages(off, n as u64).map(|p| (ino, p)));
        }
        Ok(n)
    }
    /// Without [`FaultFs::cold_page_cache`]: as if the first part of every read were cached
    /// and the rest not, so whoever reads through the twin goes both ways at once (see
    /// `Log`'s cursor). With it: the pages from `off` on that a read or an advice brought in.
    fn pread_cached(&self, off: u64, buf: &mut [u8]) -> usize {
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = st.cached.as_ref() else {
            drop(st);
            let half = buf.len() / 2;
            return self.pread(off, &mut buf[..half]).unwrap_or(0);
        };
        let data = &st.inodes[self.ino].current;
        let end = (off + buf.len() as u64).min(data.len() as u64);
        let mut upto = off;
        while upto < end && c.contains(&(self.ino, upto / PAGE)) {
            upto = (upto / PAGE + 1) * PAGE;
        }
        let n = (upto.min(end).saturating_sub(off)) as usize;
        buf[..n].copy_from_slice(&data[off as usize..off as usize + n]);
        if n < buf.len() {
            st.cache_misses += 1;
        }
        n
    }
    fn will_need(&self, off: u64, len: u64) {
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        let ino = self.ino;
        if let Some(c) = st.cached.as_mut() {
            c.extend(pages(off, len).map(|p| (ino, p)));
        }
    }
    fn fdatasync(&self) -> io::Result<()> {
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        st.syncs += 1;
        let path = st.name_of(self.ino);
        st.ops.push(Op::Fdatasync(path));
        if st.fail_sync_at == Some(st.syncs) {
            return Err(errno(libc::EIO));
        }
        let ino = &mut st.inodes[self.ino];
        ino.durable = ino.current.clone();
        ino.pending.clear();
        Ok(())
    }
    fn fallocate(&self, len: u64) -> io::Result<()> {
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        st.grow(self.ino, len)?;
        let path = st.name_of(self.ino);
        st.ops.push(Op::Fallocate(path, len));
        let ino = &mut st.inodes[self.ino];
        if (ino.current.len() as u64) < len {
            let op = DataOp::SetLen(len);
            apply(&mut ino.current, &op);
            ino.pending.push(op);
        }
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        let st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        Ok(st.inodes[self.ino].current.len() as u64)
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        st.grow(self.ino, len)?;
        let path = st.name_of(self.ino);
        st.ops.push(Op::Truncate(path, len));
        let ino = &mut st.inodes[self.ino];
        let op = DataOp::SetLen(len);
        apply(&mut ino.current, &op);
        ino.pending.push(op);
        Ok(())
    }
    fn lock(&self, kind: LockKind) -> io::Result<bool> {
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        let locks = &mut st.inodes[self.ino].locks;
        let others = locks.iter().filter(|(h, _)| **h != self.handle);
        match kind {
            LockKind::Unlock => {
                locks.remove(&self.handle);
                Ok(true)
            }
            LockKind::Shared => {
                if others.into_iter().any(|(_, ex)| *ex) {
                    return Ok(false);
                }
                locks.insert(self.handle, false);
                Ok(true)
            }
            LockKind::Exclusive => {
                if others.count() > 0 {
                    return Ok(false);
                }
                locks.insert(self.handle, true);
                Ok(true)
            }
        }
    }
    fn meta(&self) -> io::Result<FileMeta> {
        let st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        let i = &st.inodes[self.ino];
        Ok(FileMeta { uid: i.uid, mode: i.mode, is_dir: i.is_dir, len: i.current.len() as u64 })
    }
}

impl Drop for FaultFile {
    fn drop(&mut self) {
        let mut st = self.st.lock().unwrap_or_else(|p| p.into_inner());
        st.inodes[self.ino].locks.remove(&self.handle);
    }
}

impl Fs for FaultFs {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let mut st = self.lock();
        let &ino = st.names.get(path).ok_or_else(|| errno(libc::ENOENT))?;
        if st.inodes[ino].is_dir {
            return Err(errno(libc::EISDIR));
        }
        st.next_handle += 1;
        let handle = st.next_handle;
        Ok(Arc::new(FaultFile { st: self.st.clone(), ino, handle }))
    }
    fn create(&self, path: &Path, mode: u32) -> io::Result<Arc<dyn FsFile>> {
        let mut st = self.lock();
        if !FaultFs::dir_exists(&st, &parent(path)) {
            return Err(errno(libc::ENOENT));
        }
        if st.names.contains_key(path) {
            return Err(errno(libc::EEXIST));
        }
        let ino = FaultFs::new_inode(&mut st, false, mode);
        st.names.insert(path.to_path_buf(), ino);
        st.pending_meta.push((parent(path), MetaOp::Link(path.to_path_buf(), ino)));
        st.ops.push(Op::Create(path.to_path_buf()));
        st.next_handle += 1;
        let handle = st.next_handle;
        Ok(Arc::new(FaultFile { st: self.st.clone(), ino, handle }))
    }
    fn mkdir(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mut st = self.lock();
        if !FaultFs::dir_exists(&st, &parent(path)) {
            return Err(errno(libc::ENOENT));
        }
        if st.names.contains_key(path) {
            return Err(errno(libc::EEXIST));
        }
        let ino = FaultFs::new_inode(&mut st, true, mode);
        st.names.insert(path.to_path_buf(), ino);
        st.pending_meta.push((parent(path), MetaOp::Link(path.to_path_buf(), ino)));
        st.ops.push(Op::Mkdir(path.to_path_buf()));
        Ok(())
    }
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if st.names.contains_key(to) {
            return Err(errno(libc::EEXIST));
        }
        if !FaultFs::dir_exists(&st, &parent(to)) {
            return Err(errno(libc::ENOENT));
        }
        let ino = st.names.remove(from).ok_or_else(|| errno(libc::ENOENT))?;
        st.names.insert(to.to_path_buf(), ino);
        // Renames within one directory only (all the log does): one fsync makes it durable.
        st.pending_meta.push((parent(to), MetaOp::Rename(from.to_path_buf(), to.to_path_buf())));
        st.ops.push(Op::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }
    fn unlink(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        match st.names.get(path) {
            None => return Err(errno(libc::ENOENT)),
            Some(&i) if st.inodes[i].is_dir => return Err(errno(libc::EISDIR)),
            Some(_) => {}
        }
        st.names.remove(path);
        st.pending_meta.push((parent(path), MetaOp::Unlink(path.to_path_buf())));
        st.ops.push(Op::Unlink(path.to_path_buf()));
        Ok(())
    }
    fn fsync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if !FaultFs::dir_exists(&st, dir) {
            return Err(errno(libc::ENOENT));
        }
        st.ops.push(Op::FsyncDir(dir.to_path_buf()));
        let pending = std::mem::take(&mut st.pending_meta);
        let mut keep = Vec::new();
        for (d, op) in pending {
            if d != dir {
                keep.push((d, op));
                continue;
            }
            match op {
                MetaOp::Link(p, i) => {
                    st.durable_names.insert(p, i);
                }
                MetaOp::Rename(a, b) => {
                    if let Some(i) = st.durable_names.remove(&a) {
                        st.durable_names.insert(b, i);
                    }
                }
                MetaOp::Unlink(p) => {
                    st.durable_names.remove(&p);
                }
            }
        }
        st.pending_meta = keep;
        Ok(())
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        if !FaultFs::dir_exists(&st, dir) {
            return Err(errno(libc::ENOENT));
        }
        Ok(st
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }
    fn stat(&self, path: &Path) -> io::Result<FileMeta> {
        let st = self.lock();
        if path == Path::new("/") {
            return Ok(FileMeta { uid: 0, mode: 0o755, is_dir: true, len: 0 });
        }
        let &i = st.names.get(path).ok_or_else(|| errno(libc::ENOENT))?;
        let ino = &st.inodes[i];
        Ok(FileMeta { uid: ino.uid, mode: ino.mode, is_dir: ino.is_dir, len: ino.current.len() as u64 })
    }
}
