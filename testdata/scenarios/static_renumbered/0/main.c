/* static_renumbered — gcc numbers function statics with one counter for the
 * whole file (n.0, k.1, ...); a static's identity is its function, its name
 * and its place among that function's statics of that name, so edits that
 * renumber them never reset them.
 *
 * a v0: counter() { static int n; }, then g() { static int k; }.
 *       counter -> 1 2 3; g -> 0 1; nothing nested yet (-1).
 * a v1: g() moves first and gets a second static k (= 50) in a nested
 *       block, so n is now n.2 (was n.0) and g's first k stays first: counter
 *       goes on 4 5, g's k goes on 2, the nested k starts at 50.
 * a v2: the nested k removed again, and a static m (= 7) added to counter
 *       before n: counter goes on 6, g 3, m starts at 7.
 */
#include <stdio.h>

#include "scenario.h"

int counter(void);
int g(void);
extern int last_nested;
int last_m_value(void);

int main(void)
{
    int a = counter(), b = counter(), c = counter();
    int x = g(), y = g();
    printf("v0: counter %d %d %d, g %d %d, nested %d\n", a, b, c, x, y, last_nested);
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    a = counter();
    b = counter();
    x = g();
    printf("v1: counter %d %d, g %d, nested %d\n", a, b, x, last_nested);
    scenario_rebuild(2);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    a = counter();
    x = g();
    printf("v2: counter %d, g %d, m %d\n", a, x, last_m_value());
    fflush(stdout);
    return 0;
}
