/* import_reorder — imports can be added, removed and moved between modules;
 * the import tree is maintained, and the order in which NEW modules run
 * their constructors (and every module its blocks and handlers) follows the
 * new tree, not the link line (main, a, b, x, y, z).
 *
 * Every module prints its constructor, its HCR_ON_RELOAD block and an after
 * handler.  main imports a and b; x, y, z start unreachable.
 *   load:   a, b, main.
 *   step 1: a imports z, b imports x.  Tree main -> a -> z, main -> b -> x:
 *           order z, a, x, b, main.  New modules z then x run their
 *           constructors (z first although x comes first on the link line);
 *           blocks of changed/new: z, a, x, b.  Reloaded 4.
 *   step 2: a imports nothing, b imports z and x (in its source z first, but
 *           a module's imports are ordered by link position: x, z), z (changed)
 *           imports the new y.  Tree main -> a, main -> b -> x, z -> y:
 *           order a, x, y, z, b, main.  New: y.  Blocks of changed/new:
 *           a, y, z, b.  After handlers in the new order (x and z moved).
 *           Reloaded 4 (a, b, z changed, y new).
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void);
int b_value(void);

__attribute__((constructor)) static void main_ctor(void) { printf("ctor main\n"); }

static void main_after(void) { printf("after main\n"); }

HCR_ON_RELOAD(main_on_reload)
{
    printf("on_reload main\n");
    hcr_on_after_reload(main_after);
}

int main(void)
{
    int step, a, b;

    a = a_value();
    b = b_value();
    printf("main: a=%d b=%d\n", a, b);
    for (step = 1; step <= 2; step++) {
        scenario_rebuild(step);
        printf("-- reload %d\n", step);
        printf("-- reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
        a = a_value();
        b = b_value();
        printf("main: a=%d b=%d\n", a, b);
    }
    fflush(stdout);
    return 0;
}
