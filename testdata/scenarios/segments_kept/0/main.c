/* segments_kept — a reload keeps unchanged modules' code where it is and
 * loads the changed ones elsewhere; references between them stay right.
 *
 * Step 1 changes b only: a stays where it was, and b's new code reads a's
 * const table and calls a's function through a const table of pointers.
 * Step 2 changes a's const data: b, unchanged but reading a's table, must
 * see the new table (it is loaded again with a). a's counter is kept
 * throughout.
 */
#include <stdio.h>

#include "scenario.h"

int b_sum(void);
int b_call(void);
int a_count(void);
const char *a_greeting(void);

static void show(void)
{
    int sum = b_sum();
    int call = b_call();
    int count = a_count();
    printf("sum=%d call=%d count=%d %s\n", sum, call, count, a_greeting());
}

int main(void)
{
    show();
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    show();
    scenario_rebuild(2);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    show();
    fflush(stdout);
    return 0;
}
