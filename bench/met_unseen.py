"""The MET on demand on models written after its defaults were chosen: the checks of
`bench/met_on_demand.py` (same columns) on five more models written the Tellurium way, none of
which any MET default was tuned on: a reversible isomerisation with one net-rate law (Antimony
'->', one conserved total), Michaelis-Menten with substrate inflow and product export (the enzyme
total conserved), a dimerisation, a phosphorylation cycle whose kinase binds with one net-rate
law (kinase and substrate totals conserved) and a promoter that binds its own protein
(G + GP = 1). Written as Tellurium users often do, ka*P*P, the dimerisation is refused: that law
stays positive at P = 1, and the error gives the stochastic law ka*P*(P - 1), which this bench
uses (tests/test_interop.py checks the advice).

    python bench/met_unseen.py [MODEL ...]      # the output is copied to met_unseen.txt
"""

from __future__ import annotations

import sys

from met_on_demand import main

MODELS = {
    "isomerisation": """
model isomerisation
  J0: A -> B; kf*A - kr*B
  A = 40; B = 0
  kf = 1; kr = 0.5
end
""",
    "mm_inflow": """
model mm_inflow
  feed: -> S; ks
  bind: E + S -> ES; kon*E*S
  unbind: ES -> E + S; koff*ES
  cat: ES -> E + P; kcat*ES
  export: P -> ; kx*P
  E = 5; S = 0; ES = 0; P = 0
  ks = 2; kon = 0.2; koff = 1; kcat = 1; kx = 0.25
end
""",
    "dimerisation": """
model dimerisation
  make: -> P; kp
  lose: P -> ; dp*P
  pair: P + P -> D; ka*P*(P - 1)
  split: D -> P + P; kb*D
  P = 0; D = 0
  kp = 8; dp = 0.5; ka = 0.02; kb = 0.4
end
""",
    "phospho_cycle": """
model phospho_cycle
  bindk: K + X -> KX; kon*K*X - koff*KX
  phos: KX -> K + Xp; kcat*KX
  dephos: Xp -> X; kp*Xp
  K = 3; X = 20; KX = 0; Xp = 0
  kon = 0.05; koff = 0.5; kcat = 1; kp = 0.3
end
""",
    "promoter_feedback": """
model promoter_feedback
  express: G -> G + P; kp*G
  bind: G + P -> GP; kb*G*P
  release: GP -> G + P; ku*GP
  decay: P -> ; d*P
  G = 1; GP = 0; P = 0
  kp = 10; kb = 0.05; ku = 1; d = 0.5
end
""",
}

if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS), MODELS)
