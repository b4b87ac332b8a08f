# hcr.mk — build a hot-reloadable hcr image with GNU Make.
#
# In your Makefile:
#
#     HCR_MODULES = main world render      # NAME.c is compiled to module NAME
#     include path/to/hcr/tools/hcr.mk
#
#     all: $(HCR_IMAGE)
#
# `make` then compiles every module with the flags hcr needs and links them
# with hcr-link into $(HCR_IMAGE); run it with `hcr run app.hcr`, or let hcr
# watch rebuild it on every save and the program reload:
#
#     hcr watch . --build make --image app.hcr
#
# Variables (set them before the include, or on make's command line):
#     HCR_MODULES      module names (default: every *.c of this folder)
#     HCR_ROOT_MODULE  the root module, whose main runs (default: main)
#     HCR_IMAGE        the image to write (default: app.hcr)
#     HCR_OBJDIR       where objects go (default: .hcr-obj)
#     HCR_LINK         the hcr-link command (default: hcr-link)
#     HCR_INCLUDE      the folder of hcr.h (default: runtime/include of the
#                      hcr checkout this file is in)
#     CC, CPPFLAGS, CFLAGS as usual; HCR_CFLAGS holds the flags reloading
#     needs and is always added.
#
# Header dependencies are tracked (-MMD). A source saved while its object
# was compiling is compiled again by the next `make`: such an object is given
# the modification time its newest input had when the compile started (plain
# timestamps would call it up to date and the edit would be missed).

HCR_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
HCR_INCLUDE ?= $(HCR_MK_DIR)/../runtime/include
HCR_LINK ?= hcr-link
HCR_IMAGE ?= app.hcr
HCR_ROOT_MODULE ?= main
HCR_MODULES ?= $(basename $(wildcard *.c))
HCR_OBJDIR ?= .hcr-obj
HCR_CFLAGS := -fPIC -ffunction-sections -fdata-sections

HCR_OBJS = $(addprefix $(HCR_OBJDIR)/,$(addsuffix .o,$(HCR_MODULES)))
# The root first: imports are ordered by position on the command line.
HCR_LINK_INPUTS = $(HCR_OBJDIR)/$(HCR_ROOT_MODULE).o \
    $(filter-out $(HCR_OBJDIR)/$(HCR_ROOT_MODULE).o,$(HCR_OBJS))

$(HCR_IMAGE): $(HCR_OBJS)
	$(HCR_LINK) -o $@ --root $(HCR_ROOT_MODULE) $(HCR_LINK_INPUTS)

$(HCR_OBJDIR)/%.o: %.c | $(HCR_OBJDIR)
	@touch -r "$$(ls -t $^ | head -n 1)" $@.started
	$(CC) -c $(HCR_CFLAGS) $(CPPFLAGS) $(CFLAGS) -I$(HCR_INCLUDE) -MMD -MP $< -o $@
	@if [ -n "$$(find $^ -newer $@.started)" ]; then touch -r $@.started $@; fi; \
	    rm -f $@.started

$(HCR_OBJDIR):
	mkdir -p $@

-include $(HCR_OBJS:.o=.d)

hcr-clean:
	rm -rf $(HCR_OBJDIR) $(HCR_IMAGE)

.PHONY: hcr-clean
