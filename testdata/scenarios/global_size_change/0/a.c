/* a, version 0 (see main.c) */
#include <stdio.h>

struct settings {
    int speed;
};

int resized_table[2] = {1, 2};
struct settings resized_settings = {1};
int kept_value = 7;

void a_mutate(void)
{
    resized_table[0] = 10;
    resized_table[1] = 20;
    resized_settings.speed = 99;
    kept_value = 8;
}

void a_show(void)
{
    printf("a v0: table={%d, %d} speed=%d kept=%d\n", resized_table[0],
           resized_table[1], resized_settings.speed, kept_value);
}
