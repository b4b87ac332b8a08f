/* a, version 0 (see main.c) */
int last_other = -1;

int first(void)
{
    static int n = 10;
    return ++n;
}

int second(void)
{
    static int n = 20;
    return ++n;
}

int blocks(int which)
{
    if (which) {
        static int t = 200;
        return ++t;
    } else {
        static int t = 100;
        return ++t;
    }
}

int other(void)
{
    return last_other;
}
