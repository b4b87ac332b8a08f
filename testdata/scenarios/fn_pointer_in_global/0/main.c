/* fn_pointer_in_global — function pointers taken before a reload (stored in
 * globals by their initialisers, stored in globals at run time, held in
 * locals, pointing to exported or to static functions, stored in a table of
 * another module) call the new code after it; a function's address does not
 * change across reloads.
 *
 * a v0: op(x) = x + 1, static twice(x) = 2x (handed out by a_twice_ptr()),
 *       a_ops[2] = {op, twice}.
 * a v1: op(x) = x + 100, twice(x) = 3x (now "triple", same name).
 */
#include <stdio.h>

#include "scenario.h"

typedef int (*int_fn)(int);

int op(int x);                /* module a */
int_fn a_twice_ptr(void);     /* module a */
extern int_fn a_ops[2];       /* module a */

int_fn stored_by_initialiser = op;
int_fn stored_at_run_time = 0;

static void call_all(const char *label, int_fn local)
{
    printf("%s: initialiser %d, run time %d, local %d, a_ops %d %d\n", label,
           stored_by_initialiser(5), stored_at_run_time(5), local(5),
           a_ops[0](5), a_ops[1](5));
}

int main(void)
{
    int_fn local = a_twice_ptr();

    stored_at_run_time = a_twice_ptr();
    call_all("v0", local);
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    call_all("v1", local);
    printf("same addresses: %s %s %s\n",
           stored_by_initialiser == op ? "yes" : "no",
           stored_at_run_time == a_twice_ptr() ? "yes" : "no",
           a_ops[0] == op ? "yes" : "no");
    fflush(stdout);
    return 0;
}
