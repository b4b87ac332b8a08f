/* removed_function — a function that no longer exists is reached only
 * through a stub that prints "hcr: call to removed function MODULE:NAME" on
 * stderr and aborts (SIGABRT: exit code 134) — never a jump into freed
 * memory.
 *
 * a v0 defines legacy() and stores its address in the global a_hook.
 * a v1 removes legacy(); a_hook's initialiser now names replacement(), which
 * does nothing to the live a_hook: it still holds legacy's permanent
 * address.  Calling through it after the reload must hit the stub.
 */
#include <stdio.h>

#include "scenario.h"

extern int (*a_hook)(int); /* module a */
int a_version(void);       /* module a */

int main(void)
{
    int r;

    r = a_hook(1);
    printf("a v%d: a_hook(1) = %d\n", a_version(), r);
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    printf("a v%d: calling the removed function through a_hook\n", a_version());
    fflush(stdout);
    r = a_hook(1);
    printf("main: MUST NOT BE REACHED (%d)\n", r);
    fflush(stdout);
    return 0;
}
