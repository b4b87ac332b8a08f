/* init_order — modules are initialised dependencies first: a depth-first,
 * post-order walk of the import tree from the root, each module's imports
 * ordered by their position on the link line (main, a, b, c, d).
 *
 * Import tree: main imports a, c, d; a imports b; b imports c.
 * Walk: main -> a -> b -> c (emit c, b, a) -> c (already seen) -> d (emit d)
 * -> emit main.  Init order: c, b, a, d, main — here the reverse of the link
 * order for a, b, c.
 *
 * At first load every module's constructors run in that order; only then do
 * the HCR_ON_RELOAD blocks run, again in that order.
 * Step 1 changes a, b, c and d: no constructor runs again, the HCR_ON_RELOAD
 * blocks of the four changed modules run in the same order (main is
 * unchanged, so its block does not run).
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void);
int c_value(void);
int d_value(void);

__attribute__((constructor)) static void main_ctor(void) { printf("ctor main\n"); }

HCR_ON_RELOAD(main_on_reload) { printf("on_reload main\n"); }

static void show(void)
{
    int a = a_value(), c = c_value(), d = d_value();
    printf("main: a=%d c=%d d=%d\n", a, c, d);
}

int main(void)
{
    printf("main: start\n");
    show();
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    show();
    fflush(stdout);
    return 0;
}
