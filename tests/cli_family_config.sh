#!/bin/bash
# clformer test: bad model-family input at the CLI (issue 11, section 5). Each case must print
# exactly one `error:` line naming the field, exit non-zero, and leave --out uncreated; a
# checkpoint of one family resumed with a config of another is refused naming the differing keys,
# with nothing written to --out.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2"

# expect_bad NAME PATTERN OUTDIR args...: one error line containing PATTERN, rc != 0, OUTDIR absent
T="train configs/tiny.json"
expect_bad "unknown norm" "unknown norm 'rmsnrom'; did you mean 'rmsnorm'?" "$W/o1" $T norm=rmsnrom --out "$W/o1"
expect_bad "unknown mlp" "unknown mlp 'swiglo'; did you mean 'swiglu'?" "$W/o2" $T mlp=swiglo --out "$W/o2"
expect_bad "unknown position" "unknown position 'rop'; did you mean 'rope'?" "$W/o3" $T position=rop --out "$W/o3"
expect_bad "unknown mlp, no close name" "use one of: gelu, swiglu, relu2" "$W/o4" $T mlp=transformer --out "$W/o4"
expect_bad "negative softcap" "logit_softcap (-1) must be >= 0" "$W/o5" $T logit_softcap=-1 --out "$W/o5"
expect_bad "kv heads not dividing" "num_kv_heads (3) must divide num_heads (4)" "$W/o6" $T num_kv_heads=3 --out "$W/o6"
expect_bad "rope with odd head size" "position \"rope\" needs an even head size" "$W/o7" $T position=rope d_model=36 num_heads=4 --out "$W/o7"
expect_bad "share_layers not dividing" "share_layers (3) must divide num_layers (4)" "$W/o8" $T share_layers=3 --out "$W/o8"
expect_bad "bad bool" "'bias' must be true or false" "$W/o9" $T bias=yes --out "$W/o9"
expect_bad "non-positive norm_eps" "norm_eps (0)" "$W/o10" $T norm_eps=0 --out "$W/o10"
expect_bad "non-positive rope_theta" "rope_theta (-5)" "$W/o11" $T rope_theta=-5 --out "$W/o11"
printf '{"mlp": "swigl"}\n' > "$W/badmlp.json"
expect_bad "unknown mlp in a file" "unknown mlp 'swigl'; did you mean 'swiglu'?" "$W/o12" train "$W/badmlp.json" --out "$W/o12"
printf '{"bias": "false"}\n' > "$W/badbias.json"
expect_bad "quoted bool in a file" "'bias' must be true or false" "$W/o13" train "$W/badbias.json" --out "$W/o13"

# a checkpoint of one family resumed with another: refused, naming the keys, --out untouched
$CLF $T $SMALL logit_softcap=30 --device cpu --steps 1 --out "$W/ck" --quiet || bad "train a softcap checkpoint"
before=$(ls -l --time-style=full-iso "$W/ck" | md5sum)
expect_bad "resume with another softcap" "was trained with logit_softcap=30 but the config says logit_softcap=0" "$W/none" \
  $T $SMALL --device cpu --steps 2 --resume "$W/ck" --out "$W/r1"
[ -e "$W/r1" ] && bad "refused resume created $W/r1" || true
expect_bad "resume into the same dir with another family" "logit_softcap=30" "$W/none" \
  $T $SMALL mlp=relu2 --device cpu --steps 2 --resume "$W/ck" --out "$W/ck"
after=$(ls -l --time-style=full-iso "$W/ck" | md5sum)
[ "$before" = "$after" ] && ok "refused resume wrote nothing to the checkpoint directory" || bad "refused resume changed $W/ck"

# num_kv_heads 0 and num_kv_heads = num_heads are the same model: a resume across them is accepted
$CLF $T $SMALL --device cpu --steps 1 --out "$W/mha0" --quiet || bad "train a num_kv_heads 0 checkpoint"
if $CLF $T $SMALL num_kv_heads=2 --device cpu --steps 2 --resume "$W/mha0" --out "$W/mha2" --quiet; then
  ok "resume of num_kv_heads 0 with num_kv_heads = num_heads (2) is accepted"
else bad "resume of num_kv_heads 0 with num_kv_heads = num_heads (2) was refused"; fi
if $CLF $T $SMALL --device cpu --steps 3 --resume "$W/mha2" --out "$W/mha3" --quiet; then
  ok "resume of num_kv_heads 2 (= num_heads) with num_kv_heads 0 is accepted"
else bad "resume of num_kv_heads 2 (= num_heads) with num_kv_heads 0 was refused"; fi
exit $fail
