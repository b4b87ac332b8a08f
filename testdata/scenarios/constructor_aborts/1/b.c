/* module b: new at step 1; its top-level code aborts. */
#include <stdio.h>
#include <stdlib.h>

int b_value(void) { return 2; }

__attribute__((constructor)) static void b_init(void)
{
    printf("b: constructor runs, then aborts\n");
    fflush(stdout);
    abort();
}
