/* old_frame_same_module_call — main's loop keeps running its old code after
 * main changes, but its calls to functions of its own module run their
 * newest version, as its calls to other modules do: the direct branches of
 * the replaced code are pointed at the permanent addresses. A function a
 * later reload removes is called in the old frame's own copy again (never
 * the removed-function stub). Static functions are not redirected (the
 * compiler's callers may rely on their bodies): the old frame's scale()
 * stays the old one.
 *
 *   v0: update(x) = x + 1, legacy() = 7
 *   step 1 (v1): update(x) = x + 100, legacy() = 8
 *   step 2 (v2): update(x) = x * 1000, legacy removed
 *
 *   scale(x): x * 2, then x * 3, then x * 4 (static)
 *
 * (noipa: the calls stay calls, whatever the optimisation level.)
 */
#include <stdio.h>

#include "scenario.h"

static __attribute__((noinline)) int scale(int x) { return x * 4; }
__attribute__((noipa)) int update(int x) { return x * 1000; }

int main(void)
{
    int step;

    for (step = 1; step <= 2; step++) {
        printf("main v2: step %d: update(10) = %d\n", step, update(10));
        printf("main v2: step %d: scale(5) = %d\n", step, scale(5));
        scenario_rebuild(step);
        printf("main v2: reload %d -> %d\n", step,
               scenario_checked(hcr_perform_code_reload()));
    }
    printf("main v2: final: update(10) = %d\n", update(10));
    fflush(stdout);
    return 0;
}
