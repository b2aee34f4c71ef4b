#!/usr/bin/env python3
"""Checks a NixOS VM test's testScript the way the real test driver does
before it boots anything (stand-in for its pyflakes/mypy step).

Usage: check-test-script.py SCRIPT NODE...

The real driver (nixos/lib/test-driver, Driver.test_symbols) runs the script
with these globals: the driver's general symbols, one `Machine` per node
(named after the node, with characters outside [A-Za-z0-9_] replaced by `_`;
a test with exactly one node also gets it as `machine`) and `vlan<N>`. A name
the script uses that is none of these, no builtin and not assigned in the
script is an error there (pyflakes: undefined name); so is an attribute of a
node that `Machine` does not have (mypy). Exit 0 when the script parses and
both hold, else 1 with one line per problem.
"""

import ast
import builtins
import re
import sys

# Driver.test_symbols(): general_symbols.
DRIVER_SYMBOLS = {
    "start_all", "test_script", "machines", "vlans", "driver", "log", "os",
    "create_machine", "subtest", "run_tests", "join_all", "retry",
    "serial_stdout_off", "serial_stdout_on", "polling_condition", "Machine", "t",
}

# Public attributes of test_driver.machine.Machine.
MACHINE_ATTRS = {
    "name", "out_dir", "tmp_dir", "shared_dir", "state_dir", "monitor_path",
    "qmp_path", "shell_path", "start_command", "keep_vm_state", "process", "pid",
    "monitor", "qmp_client", "shell", "serial_thread", "booted", "connected",
    "last_lines", "full_console_log", "callbacks", "logger",
    "is_up", "log", "log_serial", "nested", "wait_for_monitor_prompt",
    "send_monitor_command", "wait_for_unit", "get_unit_info", "get_unit_property",
    "systemctl", "require_unit_state", "execute", "shell_interact",
    "console_interact", "succeed", "fail", "wait_until_succeeds",
    "wait_until_fails", "wait_for_shutdown", "wait_for_qmp_event", "get_tty_text",
    "wait_until_tty_matches", "send_chars", "wait_for_file", "wait_for_open_port",
    "wait_for_open_unix_socket", "wait_for_closed_port", "start_job", "stop_job",
    "wait_for_job", "connect", "screenshot", "copy_from_host_via_shell",
    "copy_from_host", "copy_from_vm", "dump_tty_contents",
    "get_screen_text_variants", "get_screen_text", "wait_for_text",
    "wait_for_console_text", "get_console_log", "send_key", "send_console",
    "start", "cleanup_statedir", "shutdown", "crash", "reboot", "wait_for_x",
    "get_window_names", "wait_for_window", "sleep", "forward_port", "block",
    "unblock", "release", "run_callbacks", "switch_root",
}


def pythonize(name):
    return re.sub(r"^[^A-z_]|[^A-z0-9_]", "_", name)


def bound_names(tree):
    """Every name the script binds anywhere (assignments, loops, defs,
    imports, parameters, comprehension targets, except handlers)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                names.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    path, nodes = sys.argv[1], sys.argv[2:]
    with open(path) as f:
        source = f.read()
    try:
        tree = ast.parse(source, path)
    except SyntaxError as e:
        print(f"{path}:{e.lineno}: testScript is not valid Python: {e.msg}")
        return 1
    node_symbols = {pythonize(n) for n in nodes}
    if len(nodes) == 1:
        node_symbols.add("machine")
    known = DRIVER_SYMBOLS | node_symbols | bound_names(tree) | set(dir(builtins))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id not in known and not re.fullmatch(r"vlan[0-9]+", node.id):
                problems.append(f"{path}:{node.lineno}: undefined name '{node.id}' (nodes: {', '.join(nodes)})")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in node_symbols
            and node.attr not in MACHINE_ATTRS
        ):
            problems.append(f"{path}:{node.lineno}: Machine has no attribute '{node.attr}'")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
