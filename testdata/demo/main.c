/* hcr demo — a creature wanders a one-line world, eating food.
 *
 *   cargo run --release -p hcr-tools --bin hcr -- watch testdata/demo
 *
 * Then open creature.c, render.c or world.c in an editor, change a line
 * marked "EDIT ME" and save: hcr watch recompiles that module, relinks the
 * image, and at the next tick the program runs the new code while the tick
 * counter, the score and the creature's position carry on.  A change that
 * does not compile is printed once and the old code keeps running.
 *
 * Options (after `--`):  --ticks N   stop after N ticks (default: run until
 *                                    Ctrl-C)
 *                        --delay MS  milliseconds per tick (default 200)
 *
 * Each tick runs under hcr_guard(): a change that crashes (try a division
 * by zero in creature_decide) is reported and rolled back, and the demo keeps
 * running the code it ran before; fix it and save, and the fix lands.
 *
 * This module calls hcr_perform_code_reload() itself, at the top of each
 * tick, when hcr_has_any_module_changed() says the image on disk changed: a
 * safe point where no other code of the program is running.
 *
 * Note: main's own loop is already running, so it keeps running the code it
 * started with (a reload never replaces a running frame); edit the other
 * modules, whose functions main calls anew every tick.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "demo.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* One tick's work, run under the crash guard: a bad edit that crashes here
 * (say, a division by zero in creature.c) is reported, the runtime goes back
 * to the code that ran before the reload, and the demo carries on. */
static void tick(void *arg)
{
    (void)arg;
    world_step();
    render_frame();
}

static int parse_count(const char *opt, const char *s, long *out)
{
    char *end;
    long v;

    if (s == NULL) {
        fprintf(stderr, "demo: %s needs a number\n", opt);
        return -1;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0) {
        fprintf(stderr, "demo: %s: not a count: %s\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    long ticks = 0, delay = 200;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ticks") == 0) {
            if (parse_count("--ticks", i + 1 < argc ? argv[++i] : NULL, &ticks) != 0)
                return 2;
        } else if (strcmp(argv[i], "--delay") == 0) {
            if (parse_count("--delay", i + 1 < argc ? argv[++i] : NULL, &delay) != 0)
                return 2;
        } else {
            fprintf(stderr, "usage: %s [--ticks N] [--delay MS]\n", argv[0]);
            return 2;
        }
    }

    printf("hcr demo: edit creature.c, render.c or world.c and save (Ctrl-C quits)\n");
    while (ticks == 0 || world_tick() < ticks) {
        if (hcr_has_any_module_changed() && hcr_perform_code_reload() < 0)
            fprintf(stderr, "demo: reload failed, the old code keeps running: %s\n",
                    hcr_last_error());
        if (hcr_guard(tick, NULL) != 0)
            fprintf(stderr, "demo: %s\n", hcr_last_error());
        fflush(stdout);
        sleep_ms(delay);
    }
    printf("demo: stopped after %d ticks with score %d\n", world_tick(), world_score());
    return 0;
}
