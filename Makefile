# Kernel-side build. The objects in bpf/obj/ are committed so that `cargo build`
# never needs clang; CI rebuilds them and fails if they differ.
CLANG ?= clang-19
# <linux/types.h> needs <asm/types.h>, which Debian keeps under the multiarch directory.
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -mcpu=v3 \
	-I bpf/include -idirafter /usr/include/$(MULTIARCH) -ffile-prefix-map=$(CURDIR)=. -fdebug-prefix-map=$(CURDIR)=.
BPF_SRCS := $(wildcard bpf/*.c)
BPF_OBJS := $(patsubst bpf/%.c,bpf/obj/%.o,$(BPF_SRCS))

.PHONY: bpf check-bpf test demo clean-bpf
bpf: $(BPF_OBJS)

bpf/obj/%.o: bpf/%.c $(wildcard bpf/include/*.h)
	@mkdir -p bpf/obj
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# Rebuild from scratch and fail if the committed objects differ.
check-bpf:
	rm -f $(BPF_OBJS)
	$(MAKE) bpf
	git diff --exit-code --stat -- bpf/obj

test:
	./scripts/test.sh

demo:
	./scripts/demo.sh
