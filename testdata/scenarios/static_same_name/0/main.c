/* static_same_name — statics of one name in different functions, and in
 * sibling blocks of one function, are told apart by their functions and
 * places, not by gcc's file-wide numbers.
 *
 * a v0: first() { static int n = 10; }, second() { static int n = 20; },
 *       blocks() with a static t = 100 in each of two blocks.
 *       first 11 12, second 21, blocks 101/201.
 * a v1: second() moves before first() and gets a static `calls` of its
 *       own; first() gets a new static `other` (= 5) before n; blocks() is
 *       unchanged but renumbered: first 13, second 22, blocks 102/202,
 *       other 5.
 */
#include <stdio.h>

#include "scenario.h"

int first(void);
int second(void);
int blocks(int which);
int other(void);

int main(void)
{
    int a = first(), b = first();
    int c = second();
    int d = blocks(0), e = blocks(1);
    printf("v0: first %d %d, second %d, blocks %d/%d, other %d\n", a, b, c, d, e, other());
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    a = first();
    c = second();
    d = blocks(0);
    e = blocks(1);
    printf("v1: first %d, second %d, blocks %d/%d, other %d\n", a, c, d, e, other());
    fflush(stdout);
    return 0;
}
