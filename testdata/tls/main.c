/* Threads hold thread-local values across a reload; a thread born after it
   starts from the initialisers. argv[1]: the next image, renamed over
   argv[0] before the reload. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "hcr.h"

void work(int id, int n);
void report(const char *who);
extern __thread int gd_var;

static pthread_barrier_t before, after;
static int turn = 1;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;

static void wait_turn(long id) {
    pthread_mutex_lock(&m);
    while (turn != id) pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);
}
static void next_turn(void) {
    pthread_mutex_lock(&m);
    turn++;
    pthread_cond_broadcast(&c);
    pthread_mutex_unlock(&m);
}

static void *thread_main(void *arg) {
    long id = (long)arg;
    char who[16];
    snprintf(who, sizeof who, "t%ld", id);
    work((int)id, 10);
    gd_var += 1000 * (int)id; /* from this module too */
    pthread_barrier_wait(&before);
    pthread_barrier_wait(&after);
    wait_turn(id);
    report(who);
    next_turn();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pthread_t t[3];
    pthread_barrier_init(&before, NULL, 4);
    pthread_barrier_init(&after, NULL, 4);
    for (long i = 0; i < 3; i++) pthread_create(&t[i], NULL, thread_main, (void *)(i + 1));
    work(9, 1);
    pthread_barrier_wait(&before);
    report("main");
    if (rename(argv[1], argv[0]) != 0) { perror("rename"); return 2; }
    printf("reloaded %d\n", hcr_perform_code_reload());
    fflush(stdout);
    pthread_barrier_wait(&after);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    report("main");
    pthread_t late;
    turn = 7;
    /* the late thread waits at the barriers: meet it there (set up for two
     * before it starts, so it never waits on a barrier being replaced) */
    pthread_barrier_destroy(&before);
    pthread_barrier_destroy(&after);
    pthread_barrier_init(&before, NULL, 2);
    pthread_barrier_init(&after, NULL, 2);
    pthread_create(&late, NULL, thread_main, (void *)7);
    pthread_barrier_wait(&before);
    pthread_barrier_wait(&after);
    pthread_join(late, NULL);
    return 0;
}
