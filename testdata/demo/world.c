/* world.c — the world's state and its rules.
 *
 * Every global below lives in hcr's persistent storage: it is initialised
 * once, when the program starts, and keeps its value across every reload.
 * Changing an initialiser (say `score = 1000`) therefore does nothing to the
 * running world; change the rules in world_step() instead.
 */
#include "demo.h"

static int tick;
static int score;
static int food = -1;
static unsigned seed = 2024;
static struct creature hero = {WORLD_WIDTH / 2, 1, 20, 0};

/* Tunables: `hcr ui PID` / `hcr set PID world:points_per_meal 50` change
 * them while the demo runs; HCR_TWEAK gives each its range. */
int points_per_meal = 10;
HCR_TWEAK(points_per_meal, 0, 100);
int creature_speed = 1; /* steps per tick */
HCR_TWEAK(creature_speed, 1, 5);

static unsigned next_random(void)
{
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) & 0x7fff;
}

void world_step(void)
{
    int move;

    tick++;

    /* EDIT ME: how often food appears (here: 1 tick in 3 when there is none) */
    if (food < 0 && next_random() % 3 == 0)
        food = (int)(next_random() % WORLD_WIDTH);
    if (food >= WORLD_WIDTH)
        food = -1;

    for (int step = 0; step < creature_speed; step++) {
        move = creature_decide(&hero, food);
        if (move != 0) {
            hero.dir = move > 0 ? 1 : -1;
            hero.x += hero.dir;
            if (hero.energy > 0)
                hero.energy--;
        } else {
            hero.energy++; /* resting */
        }
        if (hero.x <= 0) {
            hero.x = 0;
            hero.dir = 1;
        }
        if (hero.x >= WORLD_WIDTH - 1) {
            hero.x = WORLD_WIDTH - 1;
            hero.dir = -1;
        }

        if (hero.x == food) {
            food = -1;
            hero.meals++;
            hero.energy += 6;
            score += points_per_meal; /* EDIT ME: scoring */
        }
    }
}

int world_tick(void) { return tick; }
int world_food(void) { return food; }
int world_score(void) { return score; }
const struct creature *world_creature(void) { return &hero; }
