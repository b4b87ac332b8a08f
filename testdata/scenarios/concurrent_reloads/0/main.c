/* concurrent_reloads — two threads ask for a reload at the same moment.
 * The second waits for the first to end, then finds nothing left to reload:
 * one call returns 1 and the other 0, never -1 ("a reload is already in
 * progress" is for a reload asked for by a reload's own handlers, and
 * is checked here too). A before-handler that sleeps makes the two calls
 * overlap.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "scenario.h"

int a_version(void);

static pthread_barrier_t start;
static int results[2];
static int nested = 2;
static char nested_error[128];

static void slow_before(void)
{
    struct timespec ts = {0, 150 * 1000 * 1000};
    nested = hcr_perform_code_reload();
    snprintf(nested_error, sizeof nested_error, "%s", hcr_last_error());
    nanosleep(&ts, NULL);
}

static void *reloader(void *arg)
{
    int *out = arg;
    pthread_barrier_wait(&start);
    *out = hcr_perform_code_reload();
    return NULL;
}

int main(void)
{
    pthread_t t;
    int lo, hi;

    hcr_on_before_reload(slow_before);
    printf("start: a v%d, generation %u\n", a_version(), hcr_generation());
    scenario_rebuild(1);
    pthread_barrier_init(&start, NULL, 2);
    pthread_create(&t, NULL, reloader, &results[1]);
    reloader(&results[0]);
    pthread_join(t, NULL);
    lo = results[0] < results[1] ? results[0] : results[1];
    hi = results[0] < results[1] ? results[1] : results[0];
    printf("two reloads at once: %d and %d\n", lo, hi);
    printf("a reload from a handler: %d (%s)\n", nested,
           strstr(nested_error, "already in progress") ? "already in progress"
                                                       : nested_error);
    printf("after: a v%d, generation %u\n", a_version(), hcr_generation());
    fflush(stdout);
    return 0;
}
