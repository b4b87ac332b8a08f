/* no_change_no_handlers — when nothing changed, hcr_perform_code_reload()
 * returns 0 and runs nothing: no before/after handler, no HCR_ON_RELOAD
 * block, hcr_generation() stays.  "Nothing changed" includes a rebuild whose
 * objects are byte-identical: after a comment-only edit (step 1) and after
 * copying identical sources (step 2) every module is recompiled, relinked and
 * gets a new timestamp, but its content is the same.  Step 3 changes a: one
 * module reloaded, handlers run; a second reload right after it finds
 * nothing and runs nothing.
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void);

static void main_before(void) { printf("main: before\n"); }
static void main_after(void) { printf("main: after\n"); }

HCR_ON_RELOAD(main_handlers)
{
    printf("main: on_reload\n");
    hcr_on_before_reload(main_before);
    hcr_on_after_reload(main_after);
}

static void attempt(const char *label)
{
    int any = hcr_has_any_module_changed();
    int n;

    printf("%s: changed=%d\n", label, any);
    n = scenario_checked(hcr_perform_code_reload());
    printf("%s: reloaded %d, generation %u, a_value() = %d\n", label, n,
           hcr_generation(), a_value());
}

int main(void)
{
    attempt("no rebuild");
    scenario_rebuild(1);
    attempt("comment-only edit");
    attempt("again");
    scenario_rebuild(2);
    attempt("identical copy");
    scenario_rebuild(3);
    attempt("real change");
    attempt("again");
    fflush(stdout);
    return 0;
}
