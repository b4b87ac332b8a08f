/* scenario.h — helpers for the hcr scenarios in testdata/scenarios.
 *
 * A scenario program rebuilds itself between steps with scenario_rebuild(N),
 * then calls hcr_perform_code_reload() itself and prints what it sees.
 * See README.md in this directory for the scenario format.
 */
#ifndef HCR_SCENARIO_H
#define HCR_SCENARIO_H

#include <stdio.h>
#include <stdlib.h>

#include "hcr.h"

/* Applies rebuild step STEP: flushes stdout and stderr, then runs
 * "$HCR_SCENARIO_REBUILD STEP" through the shell (which copies the step's
 * files, deletes the ones its REMOVE file lists, recompiles and relinks
 * app.hcr).  The command's own stdout is sent to stderr so that it can never
 * mix with the program's stdout.  Exits with code 3 when it fails. */
__attribute__((unused)) static void scenario_rebuild(int step)
{
    char cmd[64];
    int status;

    fflush(stdout);
    fflush(stderr);
    if (getenv("HCR_SCENARIO_REBUILD") == NULL) {
        fprintf(stderr, "scenario: HCR_SCENARIO_REBUILD is not set\n");
        exit(3);
    }
    snprintf(cmd, sizeof cmd, "$HCR_SCENARIO_REBUILD %d 1>&2", step);
    status = system(cmd);
    if (status != 0) {
        fprintf(stderr, "scenario: rebuild step %d failed (status %d)\n", step,
                status);
        exit(3);
    }
}

/* Returns N (a result of hcr_perform_code_reload) unchanged; when it is -1,
 * first writes hcr_last_error() to stderr so that a failing run says why. */
__attribute__((unused)) static int scenario_checked(int n)
{
    if (n < 0)
        fprintf(stderr, "scenario: hcr_perform_code_reload failed: %s\n",
                hcr_last_error());
    return n;
}

#endif /* HCR_SCENARIO_H */
