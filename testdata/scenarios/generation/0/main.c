/* generation — hcr_generation() counts the completed reloads that returned
 * >= 1; reloads that found nothing (0) do not count.
 *
 *   start: 0
 *   step 1: a changes -> 1 reloaded, generation 1; a second reload at once
 *           finds nothing -> 0, still 1.
 *   step 2: a.c copied byte-identical -> 0, still 1.
 *   step 3: a changes again -> generation 2.
 *   step 4: a.c goes back to version 0's content (an older version is a
 *           change too) -> generation 3.
 */
#include <stdio.h>

#include "scenario.h"

int a_version(void);

static void attempt(const char *label)
{
    int n = scenario_checked(hcr_perform_code_reload());
    printf("%s: reloaded %d, generation %u, a v%d\n", label, n,
           hcr_generation(), a_version());
}

int main(void)
{
    printf("start: generation %u, a v%d\n", hcr_generation(), a_version());
    scenario_rebuild(1);
    attempt("step 1");
    attempt("step 1 again");
    scenario_rebuild(2);
    attempt("step 2");
    scenario_rebuild(3);
    attempt("step 3");
    scenario_rebuild(4);
    attempt("step 4");
    fflush(stdout);
    return 0;
}
