/* hyd — the shell tool.  Subcommands dispatch to client/cmd_*.c. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "client/cli.h"
#include "client/cmd_daemon.h"

static const char usage[] =
	"Usage: hyd COMMAND [OPTIONS]\n"
	"       echo TEXT | hyd [--session ID] [OPTIONS]   (complete TEXT through the daemon)\n\n"
	"In-process commands (no daemon needed):\n"
	"  run        generate a completion:  hyd run [-m MODEL] [-p TEXT | < TEXT] [-n N] [--temp T] ...\n"
	"  eval       write the logits of a token sequence (float32 rows)\n"
	"  tokenize   print the token ids of stdin\n\n"
	"Through the daemon (hydd; --socket PATH or HYD_SOCKET give its address):\n"
	"  session    new | list | show ID | fork ID | snapshot ID FILE | restore FILE | rm ID\n"
	"  status     model, memory per layer kind, sessions and throughput\n\n"
	"Completion through the daemon (no COMMAND; the prompt is -p TEXT or stdin):\n"
	"  -s, --session ID|NAME   session to continue (default: the session named \"default\")\n"
	"  -n N, --temp T, --top-k K, --top-p P, --min-p P, --repeat-penalty R, --seed S\n"
	"                          sampling, as for 'hyd run'\n"
	"  --stop TEXT             stop when TEXT is generated (repeatable)\n"
	"  -S, --socket PATH       the daemon's socket (default: $HYD_SOCKET, else\n"
	"                          $XDG_RUNTIME_DIR/hyd/hydd.sock, /run/hyd/hydd.sock for root)\n\n"
	"Exit status: 0 ok, 1 the operation failed, 2 usage error, 3 the daemon is unreachable.\n"
	"Run 'hyd COMMAND --help' for the options of one command; man hyd for everything.\n";

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
};

static const struct command commands[] = {
	{ "run", hyd_cmd_run },
	{ "eval", hyd_cmd_eval },
	{ "tokenize", hyd_cmd_tokenize },
	{ "session", hyd_cmd_session },
	{ "status", hyd_cmd_status },
};

int main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))) {
		fputs(usage, stdout);
		return HYD_EXIT_OK;
	}
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		puts(PACKAGE_STRING);
		return HYD_EXIT_OK;
	}
	if (argc >= 2 && argv[1][0] != '-') {
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (!strcmp(argv[1], commands[i].name))
				return commands[i].fn(argc - 1, argv + 1);
		hyd_cli_usage_error("unknown command '%s'", argv[1]);
	}
	return hyd_cmd_complete(argc, argv);
}
