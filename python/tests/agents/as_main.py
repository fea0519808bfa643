"""An agent script whose work is under `if __name__ == "__main__"`: it reports one unit done."""

import ironhost

if __name__ == "__main__":
    ironhost.progress(1, 1, "main blocks")
