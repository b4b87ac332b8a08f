/* function_static_kept — function-static variables (Nim's {.global.}
 * locals) are initialised once and keep their values across reloads, also
 * when the function's code and the variable's initialiser change.
 *
 * a v0: next_id() { static int id = 100; return ++id; } -> 101, 102
 *       calls()   { static int n = 0; return ++n; }    -> 1
 * a v1: next_id() { static int id = 0; id += 10; return id; }: the
 *       initialiser change (which also moves id from .data to .bss) does
 *       nothing, id goes on from 102 -> 112, 122; calls() -> 2.
 * The set and order of the static locals is the same in both versions (the
 * compiler names them id.N / n.N by position).
 */
#include <stdio.h>

#include "scenario.h"

int next_id(void);
int calls(void);

int main(void)
{
    int a, b;

    a = next_id();
    b = next_id();
    printf("v0: next_id %d %d, calls %d\n", a, b, calls());
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    a = next_id();
    b = next_id();
    printf("v1: next_id %d %d, calls %d\n", a, b, calls());
    fflush(stdout);
    return 0;
}
