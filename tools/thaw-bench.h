/* SPDX-License-Identifier: Apache-2.0 */
/*
 * thaw bench: a scenario suite against a running thawd.  thaw-bench.c parses
 * options, runs the scenarios and prints the table, JSON and ratios;
 * thaw-bench-scen.c holds the thawd scenarios (hit, miss, spike, template,
 * density); thaw-bench-peers.c runs the same start-run-exit work with the
 * peers a user would pick instead; thaw-bench-plot.c writes the latency CDFs
 * and bar charts with gnuplot.  Every scenario is bounded in count and time.
 */
#ifndef THAW_TOOLS_THAW_BENCH_H
#define THAW_TOOLS_THAW_BENCH_H

#include <stdint.h>

#include "tools/thaw-client.h"

/* One line of the results: a scenario's case and its latency samples. */
typedef struct bench_row {
    char scenario[16]; /* hit, miss, spike, template, density, peers */
    char name[64];     /* the case: "8 clients", "lazy", "bwrap" */
    uint64_t *ns;      /* latency samples (ns), for percentiles and the CDF */
    size_t n, cap;
    unsigned errors;
    double elapsed_s;  /* wall time of the case */
    double throughput; /* completed per second, 0 if not meaningful */
    double value;      /* scenario-specific figure (density: MiB per sandbox) */
    char unit[16];     /* of value */
    char note[256];    /* hits, fits, or why the case failed or was skipped */
    bool failed;       /* the case could not run (note says why) */
} bench_row_t;

typedef struct bench {
    const thaw_cli_t *cli;
    const char *tpl;      /* template for hit, spike, density (default "default") */
    const char *vm_image; /* vm guest image: miss per engine, template, density */
    const char *peers_script;
    const char *thaw_exe; /* this binary, for the thaw-cli peer */
    const char *out_dir;
    unsigned count;   /* requests per case */
    unsigned spike;   /* burst size */
    unsigned density; /* sandboxes prewarmed for density */
    double time_s;    /* time bound per case */
    bool peers;
    bool quiet;
    bench_row_t *rows;
    size_t nrows, caprows;
} bench_t;

/* thaw-bench.c */
bench_row_t *bench_row_new(bench_t *b, const char *scenario, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void bench_row_add(bench_row_t *r, uint64_t ns);
void bench_row_fail(bench_row_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Percentile p in [0, 100] of the row's samples (sorted in place), ns. */
uint64_t bench_row_pct(bench_row_t *r, double p);
void bench_say(const bench_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One call on a fresh connection; quiet (no error print).  0 or an exit code; *msg why. */
int bench_call(const bench_t *b, const char *method, json_t *params, json_t **result, char *msg,
               size_t n);

/* thaw-bench-scen.c */
void bench_hit(bench_t *b);
void bench_miss(bench_t *b);
void bench_spike(bench_t *b);
void bench_template(bench_t *b);
void bench_density(bench_t *b);

/* thaw-bench-peers.c */
void bench_peers(bench_t *b);

/* thaw-bench-plot.c: data files, gnuplot scripts, SVG and PNG under out_dir. */
int bench_plot(bench_t *b);

int thaw_cmd_bench(const thaw_cli_t *cli, int argc, char **argv);

#endif
