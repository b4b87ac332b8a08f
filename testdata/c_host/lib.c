#include <stdio.h>
int counter = 41;
int get(void) { return ++counter; }
int main(int argc, char **argv) { (void)argc; printf("image main: %s counter %d\n", argv[0] ? "argv ok" : "no argv", counter); return 7; }
