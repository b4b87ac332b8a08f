/* a, version 0 (see main.c) */
int counter(void)
{
    static int n;
    return ++n;
}

int g(void)
{
    static int k;
    return k++;
}

int h(void)
{
    static int n = 10;
    return ++n;
}

int nest(int w)
{
    static int n = 100;
    if (w) {
        static int n = 200;
        return ++n;
    }
    return ++n;
}

int fresh(void)
{
    return 50;
}
