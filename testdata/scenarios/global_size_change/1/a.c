/* a, version 1 (see main.c) */
#include <stdio.h>

struct settings {
    int speed;
    int accel;
};

int resized_table[4] = {5, 6, 7, 8};
struct settings resized_settings = {3, 4};
int kept_value = 70;

void a_mutate(void)
{
    resized_table[3] = 80;
}

void a_show(void)
{
    printf("a v1: table={%d, %d, %d, %d} speed=%d accel=%d kept=%d\n",
           resized_table[0], resized_table[1], resized_table[2],
           resized_table[3], resized_settings.speed, resized_settings.accel,
           kept_value);
}
