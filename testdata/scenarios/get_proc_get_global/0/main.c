/* get_proc_get_global — hcr_get_proc(module, name) returns a function's
 * permanent address (the same address code gets by naming the function,
 * unchanged by reloads, calling the newest code); hcr_get_global(module,
 * name) returns the persistent address of a writable object (also a file
 * static), unchanged by reloads; both return NULL for unknown names and
 * modules.  A function that only a new version defines is found after the
 * reload that loads it, not before.
 */
#include <stdio.h>

#include "scenario.h"

typedef int (*int_fn)(void);

int value_of(void);      /* module a */
int a_read_counter(void);
int a_bump_secret(void);

int main_counter = 77;

static const char *yes_no(int b) { return b ? "yes" : "no"; }

int main(void)
{
    int_fn p = (int_fn)hcr_get_proc("a", "value_of");
    int *g = hcr_get_global("a", "counter");
    int *s = hcr_get_global("a", "secret");
    int_fn p2, fresh;
    int *g2, *s2;

    printf("found: proc %s, counter %s, secret %s\n", yes_no(p != NULL),
           yes_no(g != NULL), yes_no(s != NULL));
    if (p == NULL || g == NULL || s == NULL) {
        fflush(stdout);
        return 1;
    }
    printf("proc is &value_of: %s, p() = %d\n", yes_no(p == value_of), p());
    printf("counter = %d\n", *g);
    *g = 42;
    printf("after *counter = 42: a_read_counter() = %d\n", a_read_counter());
    printf("secret = %d\n", *s);
    *s = 30;
    printf("after *secret = 30: a_bump_secret() = %d\n", a_bump_secret());
    printf("main_counter: %s\n",
           yes_no(hcr_get_global("main", "main_counter") == (void *)&main_counter));
    printf("unknown names are NULL: %s %s %s %s\n",
           yes_no(hcr_get_proc("a", "no_such_function") == NULL),
           yes_no(hcr_get_global("a", "no_such_global") == NULL),
           yes_no(hcr_get_proc("no_such_module", "value_of") == NULL),
           yes_no(hcr_get_global("no_such_module", "counter") == NULL));
    printf("new_fn before the reload: %s\n",
           hcr_get_proc("a", "new_fn") == NULL ? "NULL" : "found");

    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));

    p2 = (int_fn)hcr_get_proc("a", "value_of");
    g2 = hcr_get_global("a", "counter");
    s2 = hcr_get_global("a", "secret");
    printf("stable: proc %s, counter %s, secret %s, proc is &value_of %s\n",
           yes_no(p2 == p), yes_no(g2 == g), yes_no(s2 == s), yes_no(p2 == value_of));
    printf("old p() = %d\n", p());
    printf("counter = %d, secret = %d, a_read_counter() = %d\n", *g, *s,
           a_read_counter());
    fresh = (int_fn)hcr_get_proc("a", "new_fn");
    if (fresh == NULL)
        printf("new_fn after the reload: NULL\n");
    else
        printf("new_fn after the reload: %d\n", fresh());
    fflush(stdout);
    return 0;
}
