//! The `shmq-c` transport: shmq through its C ABI, `libshmq.so` loaded at run time.
//!
//! `shmq` cannot link `shmq-c` (that crate depends on this one), so the bench opens the
//! real C library with `dlopen` and calls its exported `shmq_*` functions through function
//! pointers, as a C program linked against `libshmq.so` calls them through its PLT: every
//! call goes through the C layer (handle check, re-entry guard, panic guard, `errno`
//! kept). The library carries its own copy of shmq; the two copies share nothing but the
//! queues in shared memory, as two processes would.
//!
//! The library stays loaded until the process exits: the function pointers must outlive
//! every handle, and a bench process loads it once.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context as _, Result, anyhow, bail};

use super::WaitKind;
use super::transports::Endpoint;

/// `SHMQ_ABI_VERSION` of `bindings/c/include/shmq.h` in this repository: the library must
/// say the same, or its functions may not have the signatures below.
pub const ABI_VERSION: c_int = 1;

// Constants of the header this module relies on (`bindings/c/include/shmq.h`).
const SHMQ_OK: c_int = 0;
const SHMQ_WAIT_SPIN: c_int = 1;
const SHMQ_WAIT_BLOCK: c_int = 2;
const SHMQ_WAIT_ADAPTIVE: c_int = 3;
/// A negative timeout waits forever, like the Rust transport's `send` and `recv`.
const FOREVER: i64 = -1;

/// Opaque `shmq_producer`.
#[repr(C)]
pub struct CProducer {
    _private: [u8; 0],
}

/// Opaque `shmq_consumer`.
#[repr(C)]
pub struct CConsumer {
    _private: [u8; 0],
}

// The header's signatures of the functions the bench calls.
type AbiVersionFn = unsafe extern "C" fn() -> c_int;
type ProducerOpenFn = unsafe extern "C" fn(*const c_char, *mut *mut CProducer) -> c_int;
type ConsumerOpenFn = unsafe extern "C" fn(*const c_char, *mut *mut CConsumer) -> c_int;
type ProducerSetWaitFn = unsafe extern "C" fn(*mut CProducer, c_int) -> c_int;
type ConsumerSetWaitFn = unsafe extern "C" fn(*mut CConsumer, c_int) -> c_int;
type ProducerCloseFn = unsafe extern "C" fn(*mut CProducer);
type ConsumerCloseFn = unsafe extern "C" fn(*mut CConsumer);
type SendFn = unsafe extern "C" fn(*mut CProducer, *const c_void, usize, i64) -> c_int;
type RecvFn = unsafe extern "C" fn(*mut CConsumer, *mut c_void, usize, *mut usize, i64) -> c_int;
type StrerrorFn = unsafe extern "C" fn(c_int) -> *const c_char;
type LastErrorFn = unsafe extern "C" fn() -> *const c_char;

/// The functions the bench calls.
struct Fns {
    abi_version: AbiVersionFn,
    producer_open: ProducerOpenFn,
    consumer_open: ConsumerOpenFn,
    producer_set_wait: ProducerSetWaitFn,
    consumer_set_wait: ConsumerSetWaitFn,
    producer_close: ProducerCloseFn,
    consumer_close: ConsumerCloseFn,
    send: SendFn,
    recv: RecvFn,
    strerror: StrerrorFn,
    last_error: LastErrorFn,
}

/// A loaded `libshmq.so` whose ABI version matched.
pub struct CLib {
    path: PathBuf,
    f: Fns,
}

/// The library this process loaded (at most one: every run of a bench uses the same).
static LOADED: OnceLock<CLib> = OnceLock::new();
/// Serialises the first load (the `OnceLock` cannot report a load error).
static LOADING: Mutex<()> = Mutex::new(());

/// How to get the library, for the error messages.
pub const BUILD_HINT: &str = "build it with `cargo build --release -p shmq-c` (the same profile as this shmq, \
so that it lands next to the executable), or pass --libshmq PATH";

/// Where `libshmq.so` is looked for without `--libshmq`: next to the running executable
/// (cargo puts `libshmq.so` of `-p shmq-c` and `shmq` in the same target directory).
pub fn default_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("find the shmq executable")?;
    let dir = exe.parent().ok_or_else(|| anyhow!("{} has no directory", exe.display()))?;
    Ok(dir.join("libshmq.so"))
}

/// The `dlerror` message, if any.
fn dlerror() -> String {
    // SAFETY: `dlerror` takes no arguments; it returns NULL or a NUL-terminated string
    // owned by libc, valid until the next dl* call on this thread, copied out at once.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".to_owned()
    } else {
        // SAFETY: non-null and NUL-terminated (above).
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// Loads the library at `path` (once per process) and checks its ABI version. A later call
/// with another path is an error: the process already uses the first library.
pub fn load(path: &Path) -> Result<&'static CLib> {
    let _lock = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(lib) = LOADED.get() {
        if lib.path != path {
            bail!("{} is loaded already; cannot also load {}", lib.path.display(), path.display());
        }
        return Ok(lib);
    }
    let lib = open(path)?;
    Ok(LOADED.get_or_init(|| lib))
}

fn open(path: &Path) -> Result<CLib> {
    if !path.exists() {
        bail!("the C library {} does not exist: {BUILD_HINT}", path.display());
    }
    // dlopen searches the library path for a name without a slash: always give it one.
    let path = if path.is_absolute() || path.components().count() > 1 {
        path.to_path_buf()
    } else {
        Path::new(".").join(path)
    };
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| anyhow!("the library path {} contains a NUL byte", path.display()))?;
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call. Loading runs the
    // library's initialisers: libshmq is a Rust cdylib with no constructors of its own. The
    // handle is never closed (see the module docs), so the symbols stay valid.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        bail!("cannot load {}: {}", path.display(), dlerror());
    }
    let sym = |name: &CStr| -> Result<*mut c_void> {
        // SAFETY: `handle` is a live handle from `dlopen`; `name` is NUL-terminated.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if p.is_null() {
            bail!(
                "{} has no symbol {} ({}): is it libshmq of this repository? {BUILD_HINT}",
                path.display(),
                name.to_string_lossy(),
                dlerror()
            );
        }
        Ok(p)
    };
    // Each symbol is a function of the header with the signature of the field it goes into
    // (checked for existence here, and for the ABI version below).
    macro_rules! func {
        ($name:literal, $ty:ty) => {{
            let p = sym($name)?;
            // SAFETY: `p` is the non-null address of the exported C function named
            // `$name`, whose signature in shmq.h (ABI version checked below before any
            // other call) is that of the field it is stored in; function and data
            // pointers have the same size on Linux.
            unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
        }};
    }
    let f = Fns {
        abi_version: func!(c"shmq_abi_version", AbiVersionFn),
        producer_open: func!(c"shmq_producer_open", ProducerOpenFn),
        consumer_open: func!(c"shmq_consumer_open", ConsumerOpenFn),
        producer_set_wait: func!(c"shmq_producer_set_wait", ProducerSetWaitFn),
        consumer_set_wait: func!(c"shmq_consumer_set_wait", ConsumerSetWaitFn),
        producer_close: func!(c"shmq_producer_close", ProducerCloseFn),
        consumer_close: func!(c"shmq_consumer_close", ConsumerCloseFn),
        send: func!(c"shmq_send", SendFn),
        recv: func!(c"shmq_recv", RecvFn),
        strerror: func!(c"shmq_strerror", StrerrorFn),
        last_error: func!(c"shmq_last_error", LastErrorFn),
    };
    // SAFETY: `int shmq_abi_version(void)`: no arguments, no preconditions.
    let v = unsafe { (f.abi_version)() };
    if v != ABI_VERSION {
        bail!(
            "{} has C ABI version {v}, this shmq expects {ABI_VERSION} (bindings/c/include/shmq.h): rebuild it from this \
             source tree: {BUILD_HINT}",
            path.display()
        );
    }
    Ok(CLib { path, f })
}

impl CLib {
    /// The path it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An error from code `rc` of the call `what`, with the library's words for it.
    fn error(&self, what: &str, rc: c_int) -> anyhow::Error {
        // SAFETY: `shmq_strerror` takes any int and returns a static NUL-terminated string;
        // `shmq_last_error` returns this thread's message (never NULL), valid until the
        // next libshmq call on this thread; both copied out at once.
        let (s, last) = unsafe {
            (
                CStr::from_ptr((self.f.strerror)(rc)).to_string_lossy().into_owned(),
                CStr::from_ptr((self.f.last_error)()).to_string_lossy().into_owned(),
            )
        };
        anyhow!("{what}: {s} ({rc}): {last}")
    }
}

fn wait_code(w: WaitKind) -> c_int {
    match w {
        WaitKind::Spin => SHMQ_WAIT_SPIN,
        WaitKind::Block => SHMQ_WAIT_BLOCK,
        WaitKind::Adaptive => SHMQ_WAIT_ADAPTIVE,
    }
}

/// shmq through the C ABI: two SPSC queues like [`super::transports::ShmqEnd`], a producer
/// and a consumer handle of `libshmq.so`.
pub struct CShmqEnd {
    lib: &'static CLib,
    tx: *mut CProducer,
    rx: *mut CConsumer,
}

impl CShmqEnd {
    /// The leader sends on `<base>-ping` and receives on `<base>-pong`; the peer the reverse.
    pub fn open(lib: &'static CLib, base: &str, leader: bool, wait: WaitKind) -> Result<CShmqEnd> {
        let (out, inn) = if leader { ("ping", "pong") } else { ("pong", "ping") };
        let mut e = CShmqEnd { lib, tx: std::ptr::null_mut(), rx: std::ptr::null_mut() };
        let tx_name = CString::new(format!("{base}-{out}"))?;
        let rx_name = CString::new(format!("{base}-{inn}"))?;
        // SAFETY: a NUL-terminated name and a writable out-pointer, both alive for the call.
        let rc = unsafe { (lib.f.producer_open)(tx_name.as_ptr(), &mut e.tx) };
        if rc != SHMQ_OK {
            return Err(lib.error("shmq_producer_open", rc));
        }
        // SAFETY: as above.
        let rc = unsafe { (lib.f.consumer_open)(rx_name.as_ptr(), &mut e.rx) };
        if rc != SHMQ_OK {
            return Err(lib.error("shmq_consumer_open", rc));
        }
        let w = wait_code(wait);
        // SAFETY: `e.tx` and `e.rx` are open handles (above), used by this thread only.
        let rc = unsafe { (lib.f.producer_set_wait)(e.tx, w) };
        if rc != SHMQ_OK {
            return Err(lib.error("shmq_producer_set_wait", rc));
        }
        // SAFETY: as above.
        let rc = unsafe { (lib.f.consumer_set_wait)(e.rx, w) };
        if rc != SHMQ_OK {
            return Err(lib.error("shmq_consumer_set_wait", rc));
        }
        Ok(e)
    }
}

impl Drop for CShmqEnd {
    fn drop(&mut self) {
        // SAFETY: each is NULL (ignored) or an open handle of this end, closed once here;
        // no call is inside either (this end is used by one thread).
        unsafe {
            (self.lib.f.producer_close)(self.tx);
            (self.lib.f.consumer_close)(self.rx);
        }
    }
}

impl Endpoint for CShmqEnd {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        // SAFETY: `tx` is an open producer handle; `msg` is `msg.len()` readable bytes.
        let rc = unsafe { (self.lib.f.send)(self.tx, msg.as_ptr().cast(), msg.len(), FOREVER) };
        if rc != SHMQ_OK {
            return Err(self.lib.error("shmq_send", rc));
        }
        Ok(())
    }

    /// What a C consumer does to get a message into its own buffer: `shmq_recv`, which
    /// copies it there and releases it in one call (the twin of the Rust transport's
    /// `recv` and copy).
    #[inline]
    fn recv(&mut self, out: &mut [u8]) -> Result<()> {
        let mut len = 0usize;
        // SAFETY: `rx` is an open consumer handle; `out` is `out.len()` writable bytes of
        // our own; `len` is writable.
        let rc = unsafe { (self.lib.f.recv)(self.rx, out.as_mut_ptr().cast(), out.len(), &mut len, FOREVER) };
        if rc != SHMQ_OK {
            return Err(self.lib.error("shmq_recv", rc));
        }
        if len != out.len() {
            bail!("received {len} bytes, expected {}", out.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(path: &Path) -> String {
        match open(path) {
            Ok(_) => panic!("{} loaded", path.display()),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn the_constants_are_the_header_s() {
        let header = include_str!("../../../../bindings/c/include/shmq.h");
        let define = |name: &str| -> c_int {
            let line = header
                .lines()
                .find_map(|l| l.strip_prefix("#define ")?.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no #define {name} in shmq.h"));
            line.trim().trim_matches(['(', ')']).parse().unwrap_or_else(|_| panic!("{name} is {line:?}"))
        };
        assert_eq!(define("SHMQ_ABI_VERSION"), ABI_VERSION);
        assert_eq!(define("SHMQ_OK"), SHMQ_OK);
        assert_eq!(define("SHMQ_WAIT_SPIN"), SHMQ_WAIT_SPIN);
        assert_eq!(define("SHMQ_WAIT_BLOCK"), SHMQ_WAIT_BLOCK);
        assert_eq!(define("SHMQ_WAIT_ADAPTIVE"), SHMQ_WAIT_ADAPTIVE);
    }

    #[test]
    fn a_missing_library_says_how_to_build_it() {
        let e = err(Path::new("/nonexistent-dir/libshmq.so"));
        assert!(e.contains("does not exist") && e.contains("cargo build --release -p shmq-c"), "{e}");
        assert!(e.contains("--libshmq"), "{e}");
    }

    #[test]
    fn a_file_that_is_no_library_is_refused_with_dlopen_s_reason() {
        let dir = std::env::temp_dir().join(format!("shmq-c-abi-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("libshmq.so");
        std::fs::write(&path, b"not an ELF file").unwrap();
        let e = err(&path);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.starts_with(&format!("cannot load {}", path.display())), "{e}");
    }

    #[test]
    fn a_library_without_the_symbols_is_refused() {
        // libc is loaded in every process and has no shmq_* symbols.
        let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists());
        let Some(libc) = libc else {
            panic!("no libc.so.6 found where Debian or Fedora put it");
        };
        let e = err(libc);
        assert!(e.contains("has no symbol shmq_abi_version"), "{e}");
    }
}
