"""usage: mkworld.py OUT key=value ... -> writes OUT/data (world) + DONE marker so em.py reuses it."""
import sys, os, json
sys.path.insert(0, '/work/main')
from data import world as W
out = sys.argv[1]
kw = {}
for a in sys.argv[2:]:
    k, v = a.split('=')
    t = type(getattr(W.WorldConfig(), k))
    kw[k] = t(v)
cfg = W.WorldConfig(**kw)
d = os.path.join(out, 'data')
W.write(cfg, d)
json.dump({"corpus": "built-in world", "world": kw}, open(os.path.join(d, 'DONE'), 'w'))
print(cfg)
