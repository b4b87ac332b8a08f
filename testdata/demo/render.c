/* render.c — draws one line per tick, and says when the code was reloaded. */
#include <stdio.h>

#include "demo.h"

/* An after-reload handler: runs after every reload, once the new code is in
 * place.  hcr_has_module_changed() tells, inside it, what the reload changed. */
static void after_reload(void)
{
    static const char *const modules[] = {"main", "world", "creature", "render"};
    unsigned i;

    /* hcr_generation() counts completed reloads; this one completes next. */
    printf("~~ hot reload #%u at tick %d, new code in:", hcr_generation() + 1,
           world_tick());
    for (i = 0; i < sizeof modules / sizeof modules[0]; i++)
        if (hcr_has_module_changed(modules[i]))
            printf(" %s.c", modules[i]);
    printf("; the world kept its state ~~\n"); /* EDIT ME: the reload banner */
}

/* Runs at every load of this module (the first one too): a reload deletes
 * the handlers of a module that changed, so they are registered here. */
HCR_ON_RELOAD(render_loaded)
{
    hcr_on_after_reload(after_reload);
}

void render_frame(void)
{
    const struct creature *c = world_creature();
    char line[MAX_WIDTH + 1];
    int i, food = world_food();
    int width = WORLD_WIDTH < MAX_WIDTH ? WORLD_WIDTH : MAX_WIDTH;

    for (i = 0; i < width; i++)
        line[i] = '.'; /* EDIT ME: the ground */
    if (food >= 0 && food < width)
        line[food] = '*'; /* EDIT ME: the food */
    if (c->x >= 0 && c->x < width)
        line[c->x] = creature_glyph(c);
    line[width] = '\0';
    /* EDIT ME: the layout of a line */
    printf("tick %5d |%s| score %4d  %s\n", world_tick(), line, world_score(),
           creature_says(c));
}
