/* a, version 1: second() first with a new static; first() gets one too */
int last_other = -1;

int second(void)
{
    static int calls;
    calls++;
    static int n = 20;
    return ++n;
}

int first(void)
{
    static int other = 5;
    static int n = 10;
    last_other = other;
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
