#include <stdio.h>
#include "hcr.h"
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (hcr_init(argv[1]) != 0) { fprintf(stderr, "init: %s\n", hcr_last_error()); return 1; }
    int (*get)(void) = (int (*)(void))hcr_get_proc("lib", "get");
    int *counter = (int *)hcr_get_global("lib", "counter");
    int got = get();
    printf("host: get() = %d, counter = %d\n", got, *counter);
    char *args[] = {argv[1], NULL};
    int rc = hcr_run_main(1, args);
    printf("host: main returned %d, generation %u\n", rc, hcr_generation());
    hcr_shutdown();
    return 0;
}
