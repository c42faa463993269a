/* cmd_keygen.c: `psrec keygen`: the secrets of a job. --token FILE writes a fresh job token (mode
 * 0600); --out DIR writes CURVE key pairs for --secure: by default the server pair, a client pair and
 * authorized_keys listing that client, i.e. a directory every role of a one-trust-domain job can use;
 * --name NAME writes one more pair (a host of its own), --authorize also lists it.
 * Thread model: main thread. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "cli/cli.h"
#include "common/zsec.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: psrec keygen --token FILE               a fresh job token (mode 0600) for --token-file\n"
               "       psrec keygen --out DIR                  CURVE keys for --secure --keys DIR: server.key/.pub,\n"
               "                                               client.key/.pub, authorized_keys (lists client.pub)\n"
               "       psrec keygen --out DIR --name NAME [--authorize]\n"
               "                                               one more pair NAME.key/.pub (--authorize: list it)\n"
               "Existing files are never overwritten. Secret files are mode 0600; psrec refuses secrets that\n"
               "group or others may read. See docs/security.md.\n");
}

int psrec_cmd_keygen(int argc, char **argv)
{
    const char *out = NULL, *name = NULL, *token = NULL;
    int authorize = 0;
    static const struct option opts[] = {{"out", 1, 0, 'o'},       {"name", 1, 0, 'n'}, {"token", 1, 0, 't'},
                                         {"authorize", 0, 0, 'a'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'o': out = optarg; break;
        case 'n': name = optarg; break;
        case 't': token = optarg; break;
        case 'a': authorize = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || (!out && !token) || (out && token) || (authorize && !name) || (name && !out)) {
        usage(stderr);
        return 2;
    }
    char err[PSREC_ERRBUF];
    if (token) {
        if (psrec_zsec_token_write(token, err)) {
            fprintf(stderr, "psrec keygen: %s\n", err);
            return 1;
        }
        fprintf(stderr, "psrec keygen: token written to %s (mode 0600)\n", token);
        return 0;
    }
    if (!psrec_zsec_has_curve()) {
        int a, b, c;
        zmq_version(&a, &b, &c);
        fprintf(stderr,
                "psrec keygen: this libzmq (%d.%d.%d) has no CURVE (zmq_has(\"curve\") is false): --secure is "
                "unavailable; install a libzmq built with libsodium (Debian's libzmq5 is)\n",
                a, b, c);
        return 1;
    }
    psrec_err rc = PSREC_OK;
    if (name) {
        rc = psrec_zsec_keygen(out, name, err);
        if (!rc && authorize) rc = psrec_zsec_authorize(out, name, err);
    } else {
        rc = psrec_zsec_keygen(out, "server", err);
        if (!rc) rc = psrec_zsec_keygen(out, "client", err);
        if (!rc) rc = psrec_zsec_authorize(out, "client", err);
    }
    if (rc) {
        fprintf(stderr, "psrec keygen: %s\n", err);
        return 1;
    }
    if (name)
        fprintf(stderr, "psrec keygen: %s/%s.key (secret) and %s/%s.pub written%s\n", out, name, out, name,
                authorize ? "; listed in authorized_keys" : "");
    else
        fprintf(stderr,
                "psrec keygen: CURVE keys in %s: server.key/.pub (coordinator and servers), client.key/.pub "
                "(every role), authorized_keys\n",
                out);
    return 0;
}
