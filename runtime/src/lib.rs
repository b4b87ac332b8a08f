//! The hcr runtime: *policy* of hot code reloading.
//!
//! It keeps a permanent trampoline for every function and persistent storage
//! for every writable object, knows the module import tree, orders
//! constructors, on-reload blocks and handlers, detects changes with one
//! `stat`, and swaps a whole image in one transaction that either completes
//! or leaves the old code running with nothing lost.
//!
//! Which API do I want?
//! - C and C++ hosts and modules: `include/hcr.h` (this crate builds as a
//!   static library exporting it);
//! - Rust hosts: [`Runtime`].
//!
//! ```no_run
//! let rt = hcr_runtime::Runtime::open("app.hcr").expect("load");
//! // SAFETY: `tick` has this C signature in the image.
//! let tick: Option<extern "C" fn() -> i32> = unsafe { rt.get_proc("game", "tick") };
//! loop {
//!     if let Some(tick) = tick { tick(); }
//!     if rt.has_any_module_changed() { rt.reload().expect("reload"); }
//! }
//! ```
#![deny(missing_docs)]

pub mod control;
mod crash;
mod demangle;
mod entry;
pub mod ffi;
pub mod gdb_jit;
mod globals;
mod guard;
mod heap_top;
mod helper;
mod hostlibs;
mod identity;
mod image_file;
mod inlined;
mod nim;
mod perf_map;
mod phases;
mod stack;
mod state;
mod tls;
pub mod trampoline;
mod unwind;
mod warn;
mod watcher;

use std::ffi::{c_char, CString};
use std::path::Path;

pub use crash::{image_pthread_create as pthread_create_with_alt_stack, StartRoutine};
pub use state::{plan_reload, Diff, ReloadWork, RuntimeStats};

/// Names the process as the C library reports it after `argv0`, as a
/// native run of the program would be: `program_invocation_name` and
/// `program_invocation_short_name`, the prefix of `assert`'s, `error`'s
/// and `getopt`'s messages (otherwise the host's name). For a host that
/// runs the program as its own (`hcr run`), before the program's threads
/// start. A name holding a NUL byte is left alone.
pub fn set_program_name(argv0: &str) {
    let Ok(full) = CString::new(argv0) else {
        return;
    };
    // Alive for the process: the C library may print it at exit.
    let full: &'static std::ffi::CStr = Box::leak(full.into_boxed_c_str());
    let short_at = argv0.rfind('/').map_or(0, |i| i + 1);
    unsafe extern "C" {
        static mut program_invocation_name: *mut c_char;
        static mut program_invocation_short_name: *mut c_char;
    }
    // SAFETY: the C library's two globals are pointers to NUL-terminated
    // strings it only reads; both point into the leaked string (the short
    // name at a byte boundary after its last '/'), alive for the process.
    unsafe {
        program_invocation_name = full.as_ptr().cast_mut();
        program_invocation_short_name = full.as_ptr().add(short_at).cast_mut();
    }
}

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the image failed.
    #[error("{0}")]
    Io(String),
    /// The image is unusable.
    #[error("{0}")]
    Image(String),
    /// Mapping or relocating failed.
    #[error(transparent)]
    Load(#[from] hcr_loader::LoadError),
    /// Symbols defined nowhere: every one, with the module that wants it.
    #[error("{}", hostlibs::render_unresolved(.missing))]
    Unresolved {
        /// `(module, symbols it wants)`, in module order.
        missing: Vec<(String, Vec<String>)>,
    },
    /// A library the image names (`hcr-link -l`) cannot be loaded.
    #[error("cannot load library {soname} (hcr-link -l {request}): {reason}")]
    Library {
        /// What was asked for at link time.
        request: String,
        /// The soname tried.
        soname: String,
        /// The system loader's message.
        reason: String,
    },
    /// The image could have been replaced by someone else.
    #[error("{0}")]
    Insecure(String),
    /// A fatal signal in module code inside a crash guard.
    #[error("{0}")]
    Crash(String),
    /// No image is loaded.
    #[error("the hcr runtime is not initialised (call hcr_init first)")]
    NotInitialised,
    /// `hcr_init` was called twice.
    #[error("the hcr runtime is already initialised")]
    AlreadyInitialised,
    /// A reload was requested from inside a reload (a handler).
    #[error("a reload is already in progress")]
    Busy,
    /// The root module has no `main`.
    #[error("the root module {root} defines no `main` function: hcr run calls the root's `int main(int argc, char **argv)`; relink with --root MODULE naming the module that defines it")]
    NoMain {
        /// The root module's name.
        root: String,
    },
    /// A bug or resource failure inside the runtime.
    #[error("{0}")]
    Internal(String),
}

impl From<hcr_image::ImageError> for Error {
    fn from(e: hcr_image::ImageError) -> Self {
        Error::Image(e.to_string())
    }
}

/// Handle on the process's runtime (there is one per process, shared with
/// the C API). Dropping it shuts the runtime down.
#[derive(Debug)]
pub struct Runtime {
    _private: (),
}

/// Options for [`Runtime::open_with`].
pub type Options = state::Options;

impl Runtime {
    /// Loads `image` and runs its modules' top-level code.
    ///
    /// # Errors
    /// The image is unusable, or a runtime is already open.
    pub fn open(image: impl AsRef<Path>) -> Result<Runtime, Error> {
        Self::open_with(image, &Options::default())
    }

    /// [`Runtime::open`] with options (window size).
    ///
    /// # Errors
    /// As [`Runtime::open`].
    pub fn open_with(image: impl AsRef<Path>, opts: &Options) -> Result<Runtime, Error> {
        ffi::init(image.as_ref(), opts)?;
        Ok(Runtime { _private: () })
    }

    /// Reloads changed modules; the number reloaded (0: nothing changed).
    ///
    /// # Errors
    /// The reload failed; the old code keeps running and nothing was lost.
    pub fn reload(&self) -> Result<usize, Error> {
        let r = ffi::perform_reload();
        control::note_reload(&r);
        r
    }

    /// Keeps every image a reload retires mapped until shutdown (see
    /// [`ffi::set_keep_retired_images`]): needed when reloads are requested
    /// from a thread other than the program's (`hcr run --auto-reload`).
    pub fn keep_retired_images(&self, keep: bool) {
        ffi::set_keep_retired_images(keep);
    }

    /// True when the image on disk holds changed modules (false when it
    /// cannot be read: [`Runtime::check_changed`] says why).
    pub fn has_any_module_changed(&self) -> bool {
        self.check_changed().unwrap_or(false)
    }

    /// Whether the image on disk holds changed modules, or why that cannot
    /// be told (missing, unreadable, torn or corrupt image).
    ///
    /// # Errors
    /// The image on disk cannot be read or is not a valid image.
    pub fn check_changed(&self) -> Result<bool, Error> {
        ffi::any_module_changed()
    }

    /// Completed reloads.
    pub fn generation(&self) -> u32 {
        ffi::hcr_generation()
    }

    /// The permanent address of `module`'s function `name` as `F`.
    ///
    /// # Safety
    /// `F` must be a function pointer type matching the C function.
    pub unsafe fn get_proc<F: Copy>(&self, module: &str, name: &str) -> Option<F> {
        assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<usize>());
        let a = ffi::with_state(|st| Ok(st.get_proc(module, name))).ok()??;
        // SAFETY: F is pointer-sized (asserted) and the caller vouches for
        // the signature.
        Some(unsafe { std::mem::transmute_copy::<usize, F>(&(a as usize)) })
    }

    /// The persistent address of `module`'s global `name`.
    pub fn get_global(&self, module: &str, name: &str) -> Option<*mut u8> {
        ffi::with_state(|st| Ok(st.get_global(module, name)))
            .ok()?
            .map(|a| a as *mut u8)
    }

    /// Checks that the root module defines `main` (what [`Runtime::run_main`]
    /// calls).
    ///
    /// # Errors
    /// [`Error::NoMain`], naming the root module.
    pub fn check_main(&self) -> Result<(), Error> {
        ffi::with_state(|st| match st.main_address() {
            Some(_) => Ok(()),
            None => Err(Error::NoMain {
                root: st.root_name().to_string(),
            }),
        })
    }

    /// Calls the root module's `main` with `args` (`args[0]` is the program
    /// name).
    pub fn run_main(&self, args: &[String]) -> i32 {
        let cs: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_str()).unwrap_or_default())
            .collect();
        let mut ptrs: Vec<*mut c_char> = cs.iter().map(|c| c.as_ptr() as *mut c_char).collect();
        ptrs.push(std::ptr::null_mut());
        // SAFETY: `ptrs` holds `args.len()` valid C strings and a NULL, alive
        // for the call.
        unsafe { ffi::hcr_run_main(args.len() as i32, ptrs.as_mut_ptr()) }
    }

    /// Runs `f(arg)` under the crash guard (`hcr_guard`): `Ok` when it
    /// returns; when a fatal signal hits module code inside it, the crash
    /// is reported, the runtime rolls back to the previous generation if
    /// the crashed code came from the latest reload, and the error names
    /// the crash.
    ///
    /// # Safety
    /// `f` must be safe to call with `arg`. Frames between the guard and a
    /// crash are abandoned: no destructors run, locks they hold stay held.
    ///
    /// # Errors
    /// [`Error::Crash`] after a crash.
    pub unsafe fn guard(
        &self,
        f: unsafe extern "C" fn(*mut std::ffi::c_void),
        arg: *mut std::ffi::c_void,
    ) -> Result<(), Error> {
        // SAFETY: the caller's contract.
        match unsafe { guard::guarded(f, arg) } {
            0 => Ok(()),
            _ => Err(Error::Crash(Self::last_error())),
        }
    }

    /// Memory statistics.
    pub fn stats(&self) -> RuntimeStats {
        ffi::with_state(|st| Ok(st.stats())).unwrap_or_default()
    }

    /// What the last load or reload did: modules loaded and kept, bytes
    /// read and relocated, fixups applied, addresses retargeted.
    pub fn last_reload_work(&self) -> ReloadWork {
        ffi::with_state(|st| Ok(st.last_work)).unwrap_or_default()
    }

    /// The message of the last failed C API call on this thread.
    pub fn last_error() -> String {
        // SAFETY: hcr_last_error returns a valid NUL-terminated thread-local
        // string.
        unsafe { std::ffi::CStr::from_ptr(ffi::hcr_last_error()) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        ffi::shutdown();
    }
}
