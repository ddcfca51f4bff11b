//! A file system for power cuts: a FUSE file system in memory that keeps,
//! for every file, the bytes as written and the bytes as of its last
//! `fsync`, and for every directory, its entries as they are and as of its
//! last `fsync` (POSIX durability, the strict reading: a new file, a
//! rename or an unlink survives a crash only once its directory is
//! synced). [`PowerCut::cut`] drops everything not synced, as a power cut
//! would; the service is then started again on what is left.
//!
//! The kernel caches nothing of it: entries and attributes are looked up
//! each time, and files are opened for direct I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, WriteFlags,
};

const TTL: Duration = Duration::ZERO;

#[derive(Debug, Clone)]
enum Body {
    File {
        current: Vec<u8>,
        synced: Vec<u8>,
    },
    Dir {
        current: BTreeMap<OsString, u64>,
        synced: BTreeMap<OsString, u64>,
    },
}

#[derive(Debug, Default)]
struct State {
    nodes: HashMap<u64, Body>,
    next: u64,
}

/// What a cut dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cut {
    /// Files whose unsynced bytes were dropped.
    pub files_rolled_back: usize,
    /// Bytes written and not synced, gone.
    pub bytes_dropped: u64,
    /// Directory entries not synced, gone (or back).
    pub entries_rolled_back: usize,
}

impl State {
    fn new() -> State {
        let mut nodes = HashMap::new();
        nodes.insert(
            1,
            Body::Dir {
                current: BTreeMap::new(),
                synced: BTreeMap::new(),
            },
        );
        State { nodes, next: 2 }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let body = self.nodes.get(&ino)?;
        let (kind, size, perm) = match body {
            Body::File { current, .. } => (FileType::RegularFile, current.len() as u64, 0o644),
            Body::Dir { .. } => (FileType::Directory, 4096, 0o755),
        };
        let now = SystemTime::now();
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.nodes.get_mut(&dir) {
            Some(Body::Dir { current, .. }) => Ok(current),
            Some(Body::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn lookup(&mut self, dir: u64, name: &OsStr) -> Result<u64, Errno> {
        self.entries(dir)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    fn add(&mut self, dir: u64, name: &OsStr, body: Body) -> Result<u64, Errno> {
        if self.entries(dir)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(ino, body);
        self.entries(dir)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    fn file(&mut self, ino: u64) -> Result<&mut Vec<u8>, Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Body::File { current, .. }) => Ok(current),
            Some(Body::Dir { .. }) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn sync(&mut self, ino: u64) {
        match self.nodes.get_mut(&ino) {
            Some(Body::File { current, synced }) => synced.clone_from(current),
            Some(Body::Dir { current, synced }) => synced.clone_from(current),
            None => {}
        }
    }

    /// Everything back to its last sync; what no synced directory reaches
    /// is gone.
    fn cut(&mut self) -> Cut {
        let mut cut = Cut::default();
        for body in self.nodes.values_mut() {
            match body {
                Body::File { current, synced } => {
                    if current != synced {
                        cut.files_rolled_back += 1;
                        cut.bytes_dropped += current.len().abs_diff(synced.len()) as u64
                            + current
                                .iter()
                                .zip(synced.iter())
                                .filter(|(a, b)| a != b)
                                .count() as u64;
                        current.clone_from(synced);
                    }
                }
                Body::Dir { current, synced } => {
                    let changed = current
                        .iter()
                        .filter(|(k, v)| synced.get(*k) != Some(*v))
                        .count()
                        + synced.keys().filter(|k| !current.contains_key(*k)).count();
                    cut.entries_rolled_back += changed;
                    current.clone_from(synced);
                }
            }
        }
        let mut reachable = HashSet::from([1u64]);
        let mut todo = vec![1u64];
        while let Some(ino) = todo.pop() {
            if let Some(Body::Dir { current, .. }) = self.nodes.get(&ino) {
                for &child in current.values() {
                    if reachable.insert(child) {
                        todo.push(child);
                    }
                }
            }
        }
        self.nodes.retain(|ino, _| reachable.contains(ino));
        cut
    }
}

/// The file system, mounted; unmounted on drop.
pub struct PowerCut {
    state: Arc<Mutex<State>>,
    mountpoint: PathBuf,
    _session: fuser::BackgroundSession,
}

impl PowerCut {
    /// Mounts an empty file system at `mountpoint` (created if needed);
    /// `None` where this process may not mount one (it needs `/dev/fuse`
    /// and root).
    pub fn mount(mountpoint: &Path) -> Option<PowerCut> {
        std::fs::create_dir_all(mountpoint).ok()?;
        let state = Arc::new(Mutex::new(State::new()));
        let mut config = fuser::Config::default();
        config.mount_options = vec![fuser::MountOption::FSName("powercut".into())];
        let session = fuser::spawn_mount(Fs(state.clone()), mountpoint, &config).ok()?;
        Some(PowerCut {
            state,
            mountpoint: mountpoint.to_owned(),
            _session: session,
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The power goes: everything written since its last sync is lost.
    /// Call it with nothing running on the file system (the service
    /// killed), as a machine that lost power runs nothing.
    pub fn cut(&self) -> Cut {
        lock(&self.state).cut()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.0)
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.state();
        match s
            .lookup(parent.0, name)
            .and_then(|i| s.attr(i).ok_or(Errno::ENOENT))
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state();
        if let Some(size) = size {
            match s.file(ino.0) {
                Ok(data) => data.resize(size as usize, 0),
                Err(e) => return reply.error(e),
            }
        }
        match s.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.state();
        let dir = Body::Dir {
            current: BTreeMap::new(),
            synced: BTreeMap::new(),
        };
        match s
            .add(parent.0, name, dir)
            .and_then(|i| s.attr(i).ok_or(Errno::EIO))
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.state();
        let ino = match s.lookup(parent.0, name) {
            Ok(_) if flags & libc::O_EXCL != 0 => return reply.error(Errno::EEXIST),
            Ok(ino) => {
                if flags & libc::O_TRUNC != 0 {
                    match s.file(ino) {
                        Ok(data) => data.clear(),
                        Err(e) => return reply.error(e),
                    }
                }
                ino
            }
            Err(_) => {
                let file = Body::File {
                    current: Vec::new(),
                    synced: Vec::new(),
                };
                match s.add(parent.0, name, file) {
                    Ok(ino) => ino,
                    Err(e) => return reply.error(e),
                }
            }
        };
        match s.attr(ino) {
            Some(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            None => reply.error(Errno::EIO),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        match s.entries(parent.0).map(|e| e.remove(name)) {
            Ok(Some(_)) => reply.ok(),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        let ino = match s.lookup(parent.0, name) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        match s.entries(ino) {
            Ok(e) if !e.is_empty() => return reply.error(Errno::ENOTEMPTY),
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        match s.entries(parent.0) {
            Ok(e) => {
                e.remove(name);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        let ino = match s.entries(parent.0).map(|e| e.remove(name)) {
            Ok(Some(i)) => i,
            Ok(None) => return reply.error(Errno::ENOENT),
            Err(e) => return reply.error(e),
        };
        match s.entries(newparent.0) {
            Ok(e) => {
                e.insert(newname.to_owned(), ino);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.state().attr(ino.0).is_none() {
            return reply.error(Errno::ENOENT);
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let mut s = self.state();
        match s.file(ino.0) {
            Ok(data) => {
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.state();
        match s.file(ino.0) {
            Ok(data) => {
                let end = offset as usize + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[offset as usize..end].copy_from_slice(bytes);
                reply.written(bytes.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.state().sync(ino.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut s = self.state();
        let entries: Vec<(OsString, u64)> = match s.entries(ino.0) {
            Ok(e) => e.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            Err(e) => return reply.error(e),
        };
        let mut all = vec![(OsString::from("."), ino.0), (OsString::from(".."), 1)];
        all.extend(entries);
        for (i, (name, child)) in all.into_iter().enumerate().skip(offset as usize) {
            let kind = match s.nodes.get(&child) {
                Some(Body::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.state().sync(ino.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // 64 GiB, nearly all free: the service's free-space check passes.
        let blocks = 16 << 20;
        reply.statfs(
            blocks,
            blocks - 1,
            blocks - 1,
            1 << 20,
            1 << 20,
            4096,
            255,
            4096,
        );
    }
}
