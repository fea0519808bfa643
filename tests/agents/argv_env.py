"""Prints what a script sees of its process: argv, __name__, the agent id."""

import sys

import ironhost

print("argv:", sys.argv[1:])
print("name:", __name__)
print("id:", ironhost.current().agent_id)
sys.exit(7)
