/* cxx_statics_kept — C++ function statics keep their values across a
 * reload: in an inline function and in template instances (COMDAT, vague
 * linkage), in a plain function with a nested block, and one with a dynamic
 * initialiser (its guard variable `_ZGV...` is kept too, so the initialiser
 * does not run again).
 *
 * a v0: values 1, 5, 9, 6, 71 on the first call.
 * a v1: statics and functions added before them, order changed, the
 *       dynamic initialiser changed: the values go on (2, 6, 10, 7, 72).
 */
#include <stdio.h>

#include "scenario.h"

int cxx_values(int *out);

static void show(const char *v)
{
    int x[5];
    cxx_values(x);
    printf("%s: inline %d, template<int> %d, template<long> %d, plain %d, guarded %d\n", v,
           x[0], x[1], x[2], x[3], x[4]);
}

int main(void)
{
    show("v0");
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    show("v1");
    fflush(stdout);
    return 0;
}
