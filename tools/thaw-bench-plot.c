// SPDX-License-Identifier: Apache-2.0
/*
 * thaw bench's plots: per scenario a latency CDF (one line per case, log
 * time axis) and a bar chart (p50 and p99 per case; density: MiB per
 * sandbox), each as SVG and PNG.  The data files and the gnuplot script are
 * left beside the images so a plot can be redrawn or restyled by hand.
 */
#include "tools/thaw-bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* File-name-safe copy of a case name ("8 clients" -> "8_clients"). */
static void slug(const char *in, char *out, size_t n)
{
    size_t i = 0;
    for (; in[i] && i + 1 < n; i++)
        out[i] = (in[i] >= 'a' && in[i] <= 'z') || (in[i] >= 'A' && in[i] <= 'Z') ||
                         (in[i] >= '0' && in[i] <= '9') || in[i] == '-'
                     ? in[i]
                     : '_';
    out[i] = 0;
}

static FILE *open_in(const bench_t *b, const char *name)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", b->out_dir, name);
    FILE *f = fopen(path, "we");
    if (!f)
        fprintf(stderr, "thaw bench: create %s: %s\n", path, strerror(errno));
    return f;
}

/* Both terminals for one plot: the plot command is written twice. */
static void emit(FILE *gp, const char *base, const char *setup, const char *plot)
{
    static const char *const terms[][2] = {
        {"svg size 820,480 dynamic enhanced font 'sans,11' background rgb 'white'", "svg"},
        {"pngcairo size 820,480 enhanced font 'sans,10'", "png"},
    };
    for (int t = 0; t < 2; t++) {
        fprintf(gp, "reset\nset terminal %s\nset output '%s.%s'\n%s\n%s\n", terms[t][0], base,
                terms[t][1], setup, plot);
    }
}

/* One scenario's CDF and bars; 0 or -1. */
static int plot_scenario(bench_t *b, FILE *gp, const char *scen)
{
    char plot[8192] = "plot ", name[128], base[64];
    size_t pl = strlen(plot);
    bool any = false, density = !strcmp(scen, "density");
    snprintf(base, sizeof(base), "bench-%s-bars.dat", scen);
    FILE *bars = open_in(b, base);
    if (!bars)
        return -1;
    fprintf(bars, "# case p50_ms p99_ms value\n");
    for (size_t i = 0; i < b->nrows; i++) {
        bench_row_t *r = &b->rows[i];
        if (strcmp(r->scenario, scen) || r->failed || (!r->n && !r->unit[0]))
            continue;
        fprintf(bars, "\"%s\" %.3f %.3f %.3f\n", r->name, (double)bench_row_pct(r, 50) / 1e6,
                (double)bench_row_pct(r, 99) / 1e6, r->value);
        if (density || r->n < 2)
            continue;
        char s[64];
        slug(r->name, s, sizeof(s));
        snprintf(name, sizeof(name), "bench-%s-%s.cdf", scen, s);
        FILE *f = open_in(b, name);
        if (!f)
            continue;
        bench_row_pct(r, 50); /* sorts the samples */
        for (size_t k = 0; k < r->n; k++)
            fprintf(f, "%.4f %.5f\n", (double)r->ns[k] / 1e6, (double)(k + 1) / (double)r->n);
        fclose(f);
        pl += (size_t)snprintf(plot + pl, sizeof(plot) - pl,
                               "%s'%s' using 1:2 with steps lw 2 title '%s'", any ? ", " : "", name,
                               r->name);
        any = true;
    }
    fclose(bars);
    char out[96], setup[512];
    if (any) {
        snprintf(out, sizeof(out), "bench-%s-cdf", scen);
        snprintf(setup, sizeof(setup),
                 "set title '%s: latency CDF'\nset xlabel 'latency (ms)'\nset logscale x\n"
                 "set ylabel 'fraction of requests'\nset yrange [0:1]\nset key bottom right\n"
                 "set grid",
                 scen);
        emit(gp, out, setup, plot);
    }
    snprintf(out, sizeof(out), "bench-%s-bars", scen);
    snprintf(setup, sizeof(setup),
             "set title '%s'\nset style data histograms\nset style histogram clustered gap 1\n"
             "set style fill solid 0.8 border -1\nset ylabel '%s'\nset grid ytics\n"
             "set yrange [0:*]\nset xtics rotate by -20\nset key top left",
             scen, density ? "MiB per idle ready sandbox" : "latency (ms)");
    char bplot[512];
    if (density)
        snprintf(bplot, sizeof(bplot), "plot '%s' using 4:xtic(1) title 'resident (PSS)'", base);
    else
        snprintf(bplot, sizeof(bplot),
                 "plot '%s' using 2:xtic(1) title 'p50', '' using 3 title 'p99'", base);
    emit(gp, out, setup, bplot);
    return 0;
}

int bench_plot(bench_t *b)
{
    FILE *gp = open_in(b, "bench.gp");
    if (!gp)
        return -1;
    const char *done[16];
    size_t ndone = 0;
    for (size_t i = 0; i < b->nrows && ndone < 16; i++) {
        bool seen = false, usable = false;
        for (size_t k = 0; k < ndone; k++)
            seen |= !strcmp(done[k], b->rows[i].scenario);
        if (seen)
            continue;
        for (size_t k = i; k < b->nrows; k++)
            usable |= !strcmp(b->rows[k].scenario, b->rows[i].scenario) && !b->rows[k].failed &&
                      (b->rows[k].n || b->rows[k].unit[0]);
        done[ndone++] = b->rows[i].scenario;
        if (usable)
            plot_scenario(b, gp, b->rows[i].scenario);
    }
    fclose(gp);
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(b->out_dir) < 0)
            _exit(126);
        execlp("gnuplot", "gnuplot", "bench.gp", (char *)NULL);
        fprintf(stderr, "thaw bench: gnuplot: %s (apt-get install gnuplot-nox)\n", strerror(errno));
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "thaw bench: gnuplot failed on %s/bench.gp\n", b->out_dir);
        return -1;
    }
    return 0;
}
