/* const_data_replaced — read-only data (const arrays, const strings) lives in
 * the image, not in persistent storage: after a reload, code running the new
 * image sees the new version's const data, also code of a module that did
 * not change and reads another module's const data.
 *
 * a defines const int a_table[3] and const char a_name[]; a v1 changes both.
 * b (never changes) sums a_table and copies a_name; main calls b after each
 * reload (a new call, so it runs b's code of the new image).  a's own
 * a_describe() reads them too.
 */
#include <stdio.h>

#include "scenario.h"

int b_sum(void);
const char *b_name(void);
void a_describe(void);

int main(void)
{
    printf("b: sum=%d name=%s\n", b_sum(), b_name());
    a_describe();
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    printf("b: sum=%d name=%s\n", b_sum(), b_name());
    a_describe();
    fflush(stdout);
    return 0;
}
