/* hcr.h — the C API of the hcr hot code reloading runtime.
 *
 * Modules include this header and never link a library for it: the hcr
 * loader resolves these names to the runtime that loads the image.  A host
 * program that embeds the runtime links it (Rust crate, static or shared
 * library) and uses the host part at the end.
 *
 * Build modules with:  cc -c -fPIC -ffunction-sections -fdata-sections
 */
#ifndef HCR_H
#define HCR_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- reload control: callable from the host or from any module ---- */

/* True when the image on disk holds a module whose content differs from the
 * loaded one.  Costs one non-blocking read of an inotify queue when nothing
 * happened to the image file since the last call said no, else one stat()
 * of the image. */
bool hcr_has_any_module_changed(void);

/* Outside a reload: whether the image on disk holds a changed MODULE.
 * Inside before- and after-handlers: whether the reload in progress changes
 * (or adds, or removes) MODULE. */
bool hcr_has_module_changed(const char *module);

/* Reloads every changed module.  Returns the number of modules reloaded,
 * changed or new ones (a module the root no longer reaches is unloaded, not
 * counted), 0 when nothing changed and nothing was run, or -1: the reload
 * failed, the old code keeps running and nothing was lost; hcr_last_error()
 * says why. */
int hcr_perform_code_reload(void);

/* Why the last hcr_init, hcr_run_main, hcr_perform_code_reload or hcr_guard
 * on this thread failed ("" when it succeeded, or none ran).  Queries
 * (hcr_has_*_changed, hcr_get_*, handler registration) set it only when
 * they fail themselves, and otherwise leave it as it was.  The pointer stays
 * valid for the thread's life; its text changes with those calls (as errno
 * does), cut at 4 KiB. */
const char *hcr_last_error(void);

/* Number of completed reloads that returned >= 1 (inside the handlers of a
 * reload, the count before it). */
unsigned hcr_generation(void);

/* Crash guard: runs fn(arg) and returns 0 when it returns.  When a fatal
 * signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) hits module code inside
 * it, the crash is reported on stderr and, if the crashed code came from the
 * latest reload, the runtime rolls back to the previous generation (every
 * permanent address runs the previous code again, globals keep their values,
 * the crashed image is not loaded again until the file changes); it then
 * returns -1 and hcr_last_error() names the crash.  Frames between the guard
 * and the crash are abandoned (no cleanup runs in them). */
int hcr_guard(void (*fn)(void *), void *arg);

/* ---- handlers, owned by the module whose code registers them ---- */
/* A reload that changes or removes the owner deletes its handlers (its new
 * code registers them again).  The macros below pass an address in the
 * calling module, so the owner is exact even when the compiler turns the
 * call into a tail call.  Called as plain functions (through a pointer, or
 * from Nim), the owner is the module the call returns to, else the module
 * whose constructor or HCR_ON_RELOAD block is running, else (host code) the
 * module defining FN. */

/* Runs before every reload, over the OLD import tree, in top-level order. */
void hcr_on_before_reload(void (*fn)(void));
/* Runs after every reload, over the NEW import tree, in top-level order. */
void hcr_on_after_reload(void (*fn)(void));

void hcr__on_before_reload_in(void (*fn)(void), void (*in_module)(void));
void hcr__on_after_reload_in(void (*fn)(void), void (*in_module)(void));
static inline void hcr__this_module(void) __attribute__((unused));
static inline void hcr__this_module(void) {}
#define hcr_on_before_reload(fn) hcr__on_before_reload_in((fn), hcr__this_module)
#define hcr_on_after_reload(fn) hcr__on_after_reload_in((fn), hcr__this_module)

/* HCR_ON_RELOAD(name) { ... } defines a block that runs at every load of its
 * module, the first one included, after the module's top-level code.
 * Several blocks in one module run in source order. */
struct hcr_on_reload_entry {
    void (*fn)(void);
    unsigned long order;
};
#define HCR_CAT_(a, b) a##b
#define HCR_CAT(a, b) HCR_CAT_(a, b)
#define HCR_ON_RELOAD(name)                                                   \
    static void name(void);                                                   \
    __attribute__((used, section(".hcr_on_reload"), aligned(8)))              \
    static struct hcr_on_reload_entry HCR_CAT(hcr_on_reload_entry_, name) = { \
        name, __COUNTER__};                                                   \
    static void name(void)

/* ---- live state (hcr globals, hcr set, hcr ui) ---- */

/* HCR_TWEAK(var, min, max), at file scope after the definition of the global
 * VAR (an integer, float, double or bool), gives it the range [MIN, MAX]:
 * hcr set refuses values outside it and hcr ui shows a slider. It also tells
 * hcr the variable's type when the module is built without -g. Registered at
 * every load of the module (an HCR_ON_RELOAD block calling hcr_tweak). */
void hcr_tweak(void *var, unsigned size, int kind, double min, double max);
#ifdef __cplusplus
extern "C++" {
template <class T> static inline int hcr_tweak_kind_(T *) { return T(-1) < T(0) ? 1 : 2; }
static inline int hcr_tweak_kind_(float *) { return 3; }
static inline int hcr_tweak_kind_(double *) { return 4; }
static inline int hcr_tweak_kind_(bool *) { return 5; }
}
#define HCR_TWEAK_KIND_(var) hcr_tweak_kind_(&(var))
#else
#define HCR_TWEAK_KIND_(var)                                                  \
    _Generic((var), _Bool: 5, float: 3, double: 4, unsigned char: 2,           \
             unsigned short: 2, unsigned int: 2, unsigned long: 2,            \
             unsigned long long: 2, default: 1)
#endif
#define HCR_TWEAK(var, min, max)                                              \
    HCR_ON_RELOAD(HCR_CAT(hcr_tweak_, var)) {                                 \
        hcr_tweak(&(var), sizeof(var), HCR_TWEAK_KIND_(var), (double)(min),   \
                  (double)(max));                                             \
    }

/* ---- permanent addresses ---- */

/* The permanent address of function NAME of MODULE (stable across reloads),
 * or NULL when there is none. */
void *hcr_get_proc(const char *module, const char *name);
/* The persistent address of writable object NAME of MODULE, or NULL. */
void *hcr_get_global(const char *module, const char *name);

/* ---- host part ---- */

/* Loads the image at IMAGE_PATH and runs the top-level code of every module
 * reachable from the root.  0 on success, -1 on failure (hcr_last_error).
 * A reload frees an old image once the calling thread's stack no longer
 * points into it; a host whose other threads may still run old code when it
 * reloads sets HCR_KEEP_RETIRED_IMAGES=1 in the environment before this call
 * (and HCR_ALLOW_INSECURE_IMAGE=1 loads an image others could write). */
int hcr_init(const char *image_path);
/* Calls the root module's int main(int argc, char **argv). */
int hcr_run_main(int argc, char **argv);
/* Runs destructors, unloads every image and frees every global. */
void hcr_shutdown(void);

#ifdef __cplusplus
}
#endif

#endif /* HCR_H */
