/* a, version 1: new statics before and between the old ones, functions
 * reordered; gcc's numbers of every static below change. */
int fresh(void)
{
    static int n = 50;
    return ++n;
}

int g(void)
{
    static int extra = 7;
    static int k;
    return k++ + 0 * extra++;
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

int counter(void)
{
    static int n;
    return ++n;
}

int h(void)
{
    static int n = 10;
    return ++n;
}
