/* global_size_change_referenced — a global that changes size moves to new
 * storage; a module that did not change but reads it must read the new
 * storage after the reload (it is relocated again, not kept as it was).
 *
 * a v0: int table[2] = {1, 2}; a v1: int table[4] = {5, 6, 7, 8}.
 * b never changes and sums table[0] + table[1].
 */
#include <stdio.h>

#include "scenario.h"

void a_fill(void);
int b_first_two(void);

int main(void)
{
    printf("b: %d\n", b_first_two());
    a_fill();
    printf("b: %d\n", b_first_two());
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    printf("b: %d\n", b_first_two());
    a_fill();
    printf("b: %d\n", b_first_two());
    fflush(stdout);
    return 0;
}
