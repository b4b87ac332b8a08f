/* demo.h — what the demo's modules share.
 *
 * hcr watch rebuilds every module when a header changes, and the globals of
 * world.c keep their values (no global's size depends on WORLD_WIDTH), so
 * WORLD_WIDTH may be changed live too: the creature and the food are moved
 * back inside a world that shrank.
 */
#ifndef DEMO_H
#define DEMO_H

#include "hcr.h"

#define MAX_WIDTH 64

/* EDIT ME: the width of the world (1 .. MAX_WIDTH); every module rebuilds. */
#define WORLD_WIDTH 40

struct creature {
    int x;      /* position, 0 .. WORLD_WIDTH-1 */
    int dir;    /* -1 walking left, +1 walking right */
    int energy; /* goes down as it walks, up when it eats */
    int meals;  /* food eaten so far */
};

/* world.c — the state that survives every reload */
void world_step(void);
int world_tick(void);
int world_food(void); /* position of the food, or -1 when there is none */
int world_score(void);
const struct creature *world_creature(void);

/* creature.c — how the creature behaves and looks */
int creature_decide(const struct creature *c, int food);
char creature_glyph(const struct creature *c);
const char *creature_says(const struct creature *c);

/* render.c — how one tick is drawn (one line, so it works in a pipe too) */
void render_frame(void);

#endif /* DEMO_H */
