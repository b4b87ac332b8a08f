/* moved_between_modules — a function and a global move from one module to
 * another (their definitions cut from a.c and pasted into b.c): main's
 * running frame, still in its old code, keeps reaching the function (its
 * new code), and the global keeps its value and its storage.
 *   step 1: movable() and moved_var move from a to b; main does not change.
 */
#include <stdio.h>

#include "scenario.h"

int movable(void);
extern int moved_var;
int a_value(void);
int b_value(void);

int main(void)
{
    moved_var += 10;
    printf("main: movable=%d moved_var=%d a=%d b=%d\n", movable(), moved_var, a_value(),
           b_value());
    int *was = &moved_var;
    scenario_rebuild(1);
    printf("-- reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    moved_var += 10;
    printf("main: movable=%d moved_var=%d a=%d b=%d same storage=%d\n", movable(), moved_var,
           a_value(), b_value(), was == &moved_var);
    fflush(stdout);
    return 0;
}
